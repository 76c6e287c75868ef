package config

import (
	"encoding"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

var (
	configSchema  = reflect.TypeFor[Config]()
	textUnmarshal = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// checkTable compares a decoded TOML table with the struct type t and
// returns one error per unknown key or mistyped value, named by its full
// key. The toml library stops at the first such problem; users want all.
func checkTable(table map[string]any, t reflect.Type, prefix string) []error {
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		if tag, _, _ := strings.Cut(f.Tag.Get("toml"), ","); tag != "" && tag != "-" {
			fields[tag] = f.Type
		}
	}
	keys := make([]string, 0, len(table))
	for k := range table {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, k := range keys {
		key := prefix + k
		ft, ok := fields[k]
		if !ok {
			errs = append(errs, fmt.Errorf("%s: unknown key", key))
			continue
		}
		errs = append(errs, checkValue(table[k], ft, key)...)
	}
	return errs
}

func checkValue(v any, t reflect.Type, key string) []error {
	mistyped := func(want string) []error {
		return []error{fmt.Errorf("%s: want %s, got %s", key, want, describe(v))}
	}
	if reflect.PointerTo(t).Implements(textUnmarshal) {
		s, ok := v.(string)
		if !ok {
			return mistyped("a string")
		}
		if err := reflect.New(t).Interface().(encoding.TextUnmarshaler).UnmarshalText([]byte(s)); err != nil {
			return []error{fmt.Errorf("%s: invalid value %q: %w", key, s, err)}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.String:
		if _, ok := v.(string); !ok {
			return mistyped("a string")
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			return mistyped("a boolean")
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := v.(int64)
		if !ok {
			return mistyped("an integer")
		}
		if reflect.New(t).Elem().OverflowInt(n) {
			return []error{fmt.Errorf("%s: %d is out of range", key, n)}
		}
	case reflect.Slice:
		items, ok := v.([]any)
		if !ok {
			return mistyped("an array")
		}
		var errs []error
		for i, item := range items {
			errs = append(errs, checkValue(item, t.Elem(), fmt.Sprintf("%s[%d]", key, i))...)
		}
		return errs
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			return mistyped("a table")
		}
		var errs []error
		for _, k := range sortedKeys(m) {
			errs = append(errs, checkValue(m[k], t.Elem(), key+"."+k)...)
		}
		return errs
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			return mistyped("a table")
		}
		return checkTable(m, t, key+".")
	}
	return nil
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func describe(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case []any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}
