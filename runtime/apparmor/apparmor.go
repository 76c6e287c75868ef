// Package apparmor lists the AppArmor profiles the kernel has loaded and
// loads berth's default profile. berth never writes profiles to
// /etc/apparmor.d: the default is loaded from memory when missing.
package apparmor

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// ProfilesFile lists the loaded profiles, one "name (mode)" a line.
const ProfilesFile = "/sys/kernel/security/apparmor/profiles"

// IsLoaded reports whether the kernel has the profile name, as listed in
// profiles (ProfilesFile, or a copy in tests).
func IsLoaded(profiles, name string) (bool, error) {
	f, err := os.Open(profiles)
	if err != nil {
		return false, err
	}
	defer func() { _ = f.Close() }()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		// The name may hold spaces; the mode never does.
		if i := strings.LastIndex(line, " ("); i >= 0 && line[:i] == name {
			return true, nil
		}
	}
	return false, sc.Err()
}

// Loader loads berth's default profile into the kernel when it is not
// there. Every call checks, so a profile unloaded behind berth's back (an
// AppArmor reload) comes back at the next container, and a failed load is
// retried.
type Loader struct {
	// Profiles is ProfilesFile when empty.
	Profiles string
	// Parse loads a profile's text; nil runs apparmor_parser.
	Parse func(text string) error
	// Template renders the profile; nil is HostTemplate.
	Template func(name string) Template

	mu sync.Mutex
}

// Load makes sure DefaultProfile is loaded.
func (l *Loader) Load() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	profiles := l.Profiles
	if profiles == "" {
		profiles = ProfilesFile
	}
	if ok, err := IsLoaded(profiles, DefaultProfile); err != nil {
		return fmt.Errorf("apparmor: list loaded profiles: %w", err)
	} else if ok {
		return nil
	}
	tmpl := l.Template
	if tmpl == nil {
		tmpl = HostTemplate
	}
	text, err := tmpl(DefaultProfile).Render()
	if err != nil {
		return err
	}
	parse := l.Parse
	if parse == nil {
		parse = runParser
	}
	if err := parse(text); err != nil {
		return fmt.Errorf("apparmor: load profile %s: %w", DefaultProfile, err)
	}
	return nil
}

var defaultLoader Loader

// LoadDefault makes sure berth's default profile is loaded (one loader for
// the process: concurrent callers wait for one load).
func LoadDefault() error { return defaultLoader.Load() }

// runParser loads text with apparmor_parser: -r replaces a profile of the
// same name, -K leaves the parser's cache alone (the text lives in
// berth's binary, not in a file the cache could track).
func runParser(text string) error {
	cmd := exec.Command("apparmor_parser", "-Kr")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apparmor_parser: %w: %s", err, strings.TrimSpace(out.String()))
	}
	return nil
}
