package nodeconformance

import "testing"

func TestDropLabels(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"[sig-node] Pods should get a host IP [NodeConformance] [Conformance] [sig-node, NodeConformance, Conformance]",
			"[sig-node] Pods should get a host IP [NodeConformance] [Conformance]"},
		{"[sig-api-machinery] API priority and fairness should work [sig-api-machinery]",
			"[sig-api-machinery] API priority and fairness should work"},
		// No sig- label: the last bracket is the spec's own text.
		{"a spec [Conformance]", "a spec [Conformance]"},
		{"no brackets", "no brackets"},
	} {
		if got := dropLabels(c.in); got != c.want {
			t.Errorf("dropLabels(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestSelectedDropsFilteredSpecs(t *testing.T) {
	got := selected(map[string]outcome{
		"ran":      {status: "passed"},
		"filtered": {status: "skipped", message: "skipped"},
		"skipped":  {status: "skipped", message: "skipped - no SSH key"},
		"broke":    {status: "timedout", message: "Timed out"},
	})
	c := count(got)
	if len(got) != 3 || c.passed != 1 || c.skipped != 1 || c.failed != 1 {
		t.Errorf("selected = %v, counts %+v", got, c)
	}
}

func TestCutTag(t *testing.T) {
	for _, c := range []struct {
		in, repo, tag string
		ok            bool
	}{
		{"registry.k8s.io/e2e-test-images/agnhost:2.66.1", "registry.k8s.io/e2e-test-images/agnhost", "2.66.1", true},
		{"localhost:5000/pause", "localhost:5000/pause", "", false},
		{"localhost:5000/pause:testing", "localhost:5000/pause", "testing", true},
	} {
		repo, tag, ok := cutTag(c.in)
		if repo != c.repo || tag != c.tag || ok != c.ok {
			t.Errorf("cutTag(%q) = %q %q %v", c.in, repo, tag, ok)
		}
	}
}
