package main

import (
	"log/slog"

	"github.com/berthrt/berth/runtime/config"
	"github.com/berthrt/berth/runtime/nri"
	"github.com/berthrt/berth/runtime/pod"
	"github.com/berthrt/berth/server"
)

// nriRuntime is berthd's NRI, nil inside when [nri] is not enabled.
type nriRuntime struct{ n *nri.NRI }

func newNRI(cfg *config.Config, log *slog.Logger) (*nriRuntime, error) {
	if !cfg.NRI.Enable {
		return &nriRuntime{}, nil
	}
	n, err := nri.New(nri.Options{Config: cfg.NRI, Version: server.Version, Log: log.With("component", "nri")})
	if err != nil {
		return nil, err
	}
	return &nriRuntime{n: n}, nil
}

// hooks is what the pod manager relays events to: nil (no *NRI in an
// interface) when NRI is off.
func (r *nriRuntime) hooks() pod.NRI {
	if r.n == nil {
		return nil
	}
	return r.n
}

// start lets plugins in, once pods has recovered what it had: they are
// synchronised with it.
func (r *nriRuntime) start(pods *pod.Manager) error {
	if r.n == nil {
		return nil
	}
	return r.n.Start(pods.NRIDomain())
}

func (r *nriRuntime) stop() {
	if r.n != nil {
		r.n.Stop()
	}
}
