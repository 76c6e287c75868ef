package nri

import (
	"context"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

// runtime is the Domain, nil before Start.
func (n *NRI) runtime() Domain {
	if d := n.domain.Load(); d != nil {
		return *d
	}
	return nil
}

// synchronize tells a plugin that just connected (or was launched) of
// every pod and container there is, then applies the updates it asks
// for. The library calls it with plugin synchronisation blocked by no
// CRI call (see BlockSync), so the lists are exactly what the plugin
// gets no create event for.
func (n *NRI) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	d := n.runtime()
	var (
		pods []*api.PodSandbox
		ctrs []*api.Container
	)
	if d != nil {
		for _, p := range d.Pods() {
			pods = append(pods, toPod(p))
		}
		for _, c := range d.Containers() {
			ctrs = append(ctrs, toContainer(c))
		}
	}
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return err
	}
	n.apply(ctx, updates)
	return nil
}

// updateFromPlugin applies the updates a plugin asks for by itself and
// returns those that failed.
func (n *NRI) updateFromPlugin(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return n.apply(ctx, updates), nil
}

// apply changes containers' resources as plugins asked, through the
// runtime's own update path, and returns the updates that failed
// (logged, unless the plugin said a failure does not matter).
func (n *NRI) apply(ctx context.Context, updates []*api.ContainerUpdate) []*api.ContainerUpdate {
	d := n.runtime()
	var failed []*api.ContainerUpdate
	for _, u := range updates {
		if u == nil {
			continue
		}
		var err error
		if d == nil {
			err = errNotStarted
		} else {
			err = d.UpdateContainer(ctx, u.GetContainerId(), func(cur *runtimeapi.LinuxContainerResources) (*runtimeapi.LinuxContainerResources, error) {
				return mergeResources(cur, u.GetLinux().GetResources())
			})
		}
		if err == nil {
			continue
		}
		if u.GetIgnoreFailure() {
			n.log.Debug("NRI container update failed; the plugin ignores it", "update", describeUpdate(u), "err", err)
			continue
		}
		n.log.Warn("NRI container update failed", "update", describeUpdate(u), "err", err)
		failed = append(failed, u)
	}
	return failed
}

// evict stops the containers plugins want gone.
func (n *NRI) evict(ctx context.Context, evictions []*api.ContainerEviction) {
	d := n.runtime()
	for _, e := range evictions {
		if e == nil || d == nil {
			continue
		}
		n.log.Info("NRI plugin evicts a container", "id", e.GetContainerId(), "reason", e.GetReason())
		if err := d.EvictContainer(context.WithoutCancel(ctx), e.GetContainerId(), e.GetReason()); err != nil {
			n.log.Warn("NRI eviction failed", "id", e.GetContainerId(), "err", err)
		}
	}
}

// errNotStarted: an update arrived before Start gave NRI the runtime.
var errNotStarted = errdefs.Unavailable("NRI is not started")
