package config

import "testing"

// FuzzParse: any config text is either a config or an error naming the
// problem, never a panic.
func FuzzParse(f *testing.F) {
	f.Add(Render(Default()))
	f.Add("root = 1\n[runtimes.x]\nargs = [1, 2]\n[image.mirrors]\n\"a\" = [\"ftp://\"]\n")
	f.Add("[[runtimes]]\n")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(text)
		if err == nil && c == nil {
			t.Fatal("no config and no error")
		}
	})
}
