package cdi

import (
	"errors"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berthrt/berth/runtime/errdefs"
)

func TestRequested(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{
		CDIDevices: []*runtimeapi.CDIDevice{{Name: "a.com/gpu=0"}, {Name: "a.com/gpu=1"}, {Name: "a.com/gpu=0"}},
		Annotations: map[string]string{
			"cdi.k8s.io/z.com_1":       "z.com/nic=1",
			"cdi.k8s.io/b.com_x":       "b.com/fpga=x,a.com/gpu=1",
			"io.kubernetes.container":  "ignored",
			"not.cdi.k8s.io/something": "c.com/x=y",
		},
	}
	got, err := Requested(cfg)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"a.com/gpu=0", "a.com/gpu=1", "b.com/fpga=x", "z.com/nic=1"}
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got, err := Requested(&runtimeapi.ContainerConfig{}); err != nil || len(got) != 0 {
		t.Errorf("no request: %v, %v", got, err)
	}
}

func TestRequestedBadAnnotation(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Annotations: map[string]string{"cdi.k8s.io/x": "not-qualified"}}
	if _, err := Requested(cfg); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("err %v, want InvalidArgument", err)
	}
}
