package network

import (
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// NICStats are an interface's counters.
type NICStats struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// Interfaces reads the counters of the interfaces (but lo) in the network
// namespace pinned at path; nil if it cannot be read.
func Interfaces(path string) []NICStats {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil
	}
	defer func() { _ = ns.Close() }()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil
	}
	var out []NICStats
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" || a.Statistics == nil {
			continue
		}
		s := a.Statistics
		out = append(out, NICStats{Name: a.Name,
			RxBytes: s.RxBytes, RxPackets: s.RxPackets, RxErrors: s.RxErrors, RxDropped: s.RxDropped,
			TxBytes: s.TxBytes, TxPackets: s.TxPackets, TxErrors: s.TxErrors, TxDropped: s.TxDropped})
	}
	return out
}
