// Package network gives pods their network: a network namespace pinned
// under the state directory, wired by CNI plugins through libcni.
package network

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/containernetworking/cni/libcni"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthrt/berth/runtime/errdefs"
)

// Options configures CNI.
type Options struct {
	ConfDir  string
	BinDirs  []string
	CacheDir string
	// DefaultSubnet is the subnet of the bridge network written when
	// ConfDir holds no configuration ("" writes none).
	DefaultSubnet string
	// SubnetExplicit says DefaultSubnet was set in the config file: when
	// another network holds it, berth refuses to start rather than pick
	// a free one.
	SubnetExplicit bool
	// HostNets lists the host's addresses and routes; nil reads them
	// (HostNets). Tests inject theirs.
	HostNets func() ([]HostNet, error)
	Log      *slog.Logger

	// masquerade keeps a subnet's nat rule; nil is ensureMasquerade.
	// Unit tests record instead of changing the host's nat table.
	masquerade func(ctx context.Context, subnet string) error
}

// CNI runs the configured network's plugins.
type CNI struct {
	opts Options
	cni  *libcni.CNIConfig
	log  *slog.Logger

	// renderMu serialises rewrites of berth's default conflist.
	renderMu sync.Mutex

	mu   sync.Mutex
	list *libcni.NetworkConfigList
	mod  string // name+mtime of the loaded file, to notice edits
}

// New returns a CNI runner. It writes berth's default network when the
// conf dir has no configuration, so a fresh node has a working network,
// on a subnet no other network of the host holds (see ensureDefault),
// and masquerades that network's traffic to the outside while it is the
// one in use.
func New(ctx context.Context, opts Options) (*CNI, error) {
	if opts.HostNets == nil {
		opts.HostNets = HostNets
	}
	if opts.masquerade == nil {
		opts.masquerade = ensureMasquerade
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &CNI{opts: opts, log: log, cni: libcni.NewCNIConfigWithCacheDir(opts.BinDirs, opts.CacheDir, nil)}
	if opts.DefaultSubnet == "" {
		return c, nil
	}
	if err := c.ensureDefault(); err != nil {
		return nil, err
	}
	if list, err := c.load(); err == nil && list.Name == DefaultNetworkName {
		for _, s := range ConfSubnets(list) {
			if err := opts.masquerade(ctx, s.String()); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// load returns the first network configuration in the conf dir (by file
// name, as the kubelet's other runtimes do), reloading it when it changes.
func (c *CNI) load() (*libcni.NetworkConfigList, error) {
	files, err := libcni.ConfFiles(c.opts.ConfDir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		return nil, err
	}
	slices.Sort(files)
	if len(files) == 0 {
		return nil, errdefs.FailedPrecondition("no CNI network configuration in %s", c.opts.ConfDir)
	}
	file := files[0]
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	mod := file + fi.ModTime().String()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.list != nil && c.mod == mod {
		return c.list, nil
	}
	list, err := LoadConfList(file)
	if err != nil {
		return nil, fmt.Errorf("cni config %s: %w", file, err)
	}
	c.list, c.mod = list, mod
	return list, nil
}

// forget drops the loaded configuration: the next call reads the file
// again even if its name and mtime look the same.
func (c *CNI) forget() {
	c.mu.Lock()
	c.list = nil
	c.mu.Unlock()
}

// Status reports whether the network is usable: a configuration exists
// and each of its plugins is installed.
func (c *CNI) Status() error {
	list, err := c.load()
	if err != nil {
		return err
	}
	for _, p := range list.Plugins {
		if _, err := c.findPlugin(p.Network.Type); err != nil {
			return err
		}
	}
	return nil
}

func (c *CNI) findPlugin(name string) (string, error) {
	for _, d := range c.opts.BinDirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errdefs.FailedPrecondition("CNI plugin %q not found in %s", name, strings.Join(c.opts.BinDirs, ", "))
}

// PortMapping is a CRI port mapping in CNI's form.
type PortMapping struct {
	HostPort      int32  `json:"hostPort"`
	ContainerPort int32  `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

// Pod identifies a pod to the plugins.
type Pod struct {
	ID        string // sandbox id
	Name      string
	Namespace string
	UID       string
	NetNS     string
	Ports     []PortMapping
	// Annotations are the pod's: plugins declaring the pod-annotations
	// capability receive them, the bandwidth plugin its limits.
	Annotations map[string]string
	// Network is the network the pod was attached to (from Setup); used by
	// Teardown to find the configuration it was set up with.
	Network string
}

// runtimeConf is p's CNI runtime configuration; its error is a bad
// bandwidth annotation (see capabilityArgs).
func (c *CNI) runtimeConf(p Pod) (*libcni.RuntimeConf, error) {
	caps, err := capabilityArgs(p)
	rt := &libcni.RuntimeConf{
		ContainerID: p.ID,
		NetNS:       p.NetNS,
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ID},
			{"K8S_POD_UID", p.UID},
		},
		CapabilityArgs: caps,
	}
	return rt, err
}

// Attachment is the outcome of Setup.
type Attachment struct {
	Network string
	// IPs of the pod, IPv4 first.
	IPs []string
}

// Setup attaches the pod's namespace to the network.
func (c *CNI) Setup(ctx context.Context, p Pod) (Attachment, error) {
	rt, err := c.runtimeConf(p)
	if err != nil {
		return Attachment{}, err
	}
	list, err := c.load()
	if err != nil {
		return Attachment{}, err
	}
	res, err := c.cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		// Undo what the plugins that ran did (IPs, veths, rules).
		_ = c.cni.DelNetworkList(context.WithoutCancel(ctx), list, rt)
		return Attachment{}, fmt.Errorf("cni add %s: %w", list.Name, err)
	}
	ips, err := podIPs(res)
	return Attachment{Network: list.Name, IPs: ips}, err
}

func podIPs(res cnitypes.Result) ([]string, error) {
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, err
	}
	var v4, v6 []string
	for _, ip := range r.IPs {
		if ip.Address.IP.To4() != nil {
			v4 = append(v4, ip.Address.IP.String())
		} else {
			v6 = append(v6, ip.Address.IP.String())
		}
	}
	return append(v4, v6...), nil
}

// Teardown detaches the pod. It uses the configuration the pod was set up
// with (libcni's cache), so an edited conf dir still releases its IP.
func (c *CNI) Teardown(ctx context.Context, p Pod) error {
	rt, _ := c.runtimeConf(p) // a pod set up had valid annotations; the cache has its arguments
	var list *libcni.NetworkConfigList
	if cached, cachedRT, err := c.cni.GetNetworkListCachedConfig(&libcni.NetworkConfigList{Name: p.Network}, rt); err == nil && cached != nil {
		if l, err := libcni.ConfListFromBytes(cached); err == nil {
			list = l
			if cachedRT != nil {
				rt.CapabilityArgs = cachedRT.CapabilityArgs
			}
		}
	}
	if list == nil {
		var err error
		if list, err = c.load(); err != nil {
			return err
		}
	}
	if p.NetNS != "" {
		if res, err := c.cni.GetNetworkListCachedResult(list, rt); err == nil && res != nil {
			if err := restoreAddrs(p.NetNS, res); err != nil {
				return fmt.Errorf("cni del %s: %w", list.Name, err)
			}
		}
	}
	if err := c.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("cni del %s: %w", list.Name, err)
	}
	return nil
}

// LoadConfList loads a CNI configuration file: a .conflist, or a single
// plugin's configuration (.conf, .json) as a list of that one plugin, as
// libcni's deprecated ConfFromFile and ConfListFromConf did.
func LoadConfList(file string) (*libcni.NetworkConfigList, error) {
	if strings.HasSuffix(file, ".conflist") {
		return libcni.NetworkConfFromFile(file)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("error reading %s: %w", file, err)
	}
	one, err := libcni.NetworkPluginConfFromBytes(data)
	if err != nil {
		return nil, err
	}
	var plugin map[string]any
	if err := json.Unmarshal(one.Bytes, &plugin); err != nil {
		return nil, err
	}
	data, err = json.Marshal(map[string]any{
		"name":       one.Network.Name,
		"cniVersion": one.Network.CNIVersion,
		"plugins":    []any{plugin},
	})
	if err != nil {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(data)
}
