package config

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Reference renders docs/config.md: every key of Config with its type,
// default and meaning. docs takes the meanings from the struct fields' doc
// comments (keyed "Type.Field", see DocComments); the keys, types and
// defaults come from the struct itself, so the page cannot list a key writ
// does not have, or miss one it does.
func Reference(docs map[string]string) []byte {
	var b bytes.Buffer
	b.WriteString("<!-- Generated from internal/config by `make docs`; do not edit. -->\n")
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("writ reads one TOML file, `/etc/writ/config.toml` unless `--config` or `WRIT_CONFIG` names another.\n")
	b.WriteString("Unknown keys are errors (with a \"did you mean\"), so a typo never weakens a policy. Relative paths are\n")
	b.WriteString("resolved against the directory of the config file. `writ config check` prints the effective config.\n")
	defaults := defaultValues()
	section := "\x00"
	walkKeys(reflect.TypeOf(Config{}), "", func(key string, f reflect.StructField) {
		table, name := "", key
		if i := strings.LastIndex(key, "."); i >= 0 {
			table, name = key[:i], key[i+1:]
		}
		if table != section {
			section = table
			if table == "" {
				b.WriteString("\n## Top level\n\n")
			} else {
				fmt.Fprintf(&b, "\n## [%s]\n\n", table)
			}
			b.WriteString("| key | type | default | meaning |\n|---|---|---|---|\n")
		}
		meaning := docs[ownerOf(key)+"."+f.Name]
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", name, typeName(f.Type), defaults[key], escapeCell(meaning))
	})
	b.WriteString("\n## Effective config with every default\n\n")
	b.WriteString("`writ config check` prints this for a config that sets only the required keys:\n\n```toml\n")
	b.Write(minimalEffective())
	b.WriteString("```\n")
	return b.Bytes()
}

// minimalConfig sets only the required keys.
const minimalConfig = `environment = "production"
[allowlist]
url = "https://gitlab.example.com/platform/deploy-allowlist.git"
identity = "platform/deploy-allowlist"
[trust]
ssh_allowed_signers = "/etc/writ/allowed_signers"
`

func minimalEffective() []byte {
	c, err := Parse([]byte(minimalConfig))
	if err != nil {
		panic(err)
	}
	out, err := c.Effective()
	if err != nil {
		panic(err)
	}
	return out
}

// Effective is the config as writ uses it, defaults applied and paths
// resolved, as TOML.
func (c *Config) Effective() ([]byte, error) {
	var b bytes.Buffer
	enc := toml.NewEncoder(&b)
	enc.Indent = ""
	if err := enc.Encode(c); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// defaultValues maps each key to its default as Markdown, "required" for
// keys minimalConfig must set.
func defaultValues() map[string]string {
	c, err := Parse([]byte(minimalConfig))
	if err != nil {
		panic(err)
	}
	required := map[string]bool{"environment": true, "allowlist.url": true, "allowlist.identity": true}
	out := map[string]string{}
	v := reflect.ValueOf(*c)
	walkKeys(reflect.TypeOf(Config{}), "", func(key string, _ reflect.StructField) {
		if required[key] {
			out[key] = "required"
			return
		}
		if key == "trust.ssh_allowed_signers" || key == "trust.openpgp_keyring" {
			out[key] = "one of the two is required"
			return
		}
		out[key] = formatDefault(fieldByKey(v, key))
	})
	return out
}

func fieldByKey(v reflect.Value, key string) reflect.Value {
	for _, part := range strings.Split(key, ".") {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); name == part {
				v = v.Field(i)
				break
			}
		}
	}
	return v
}

func formatDefault(v reflect.Value) string {
	if v.IsZero() {
		return "—"
	}
	switch x := v.Interface().(type) {
	case Duration:
		return "`" + x.Duration.String() + "`"
	case time.Duration:
		return "`" + x.String() + "`"
	case string, Mode:
		return fmt.Sprintf("`%q`", x)
	}
	return fmt.Sprintf("`%v`", v.Interface())
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeOf(Duration{}):
		return "duration (`30s`, `1h`)"
	case t.Kind() == reflect.String:
		return "string"
	case t.Kind() == reflect.Bool:
		return "boolean"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "integer"
	case t.Kind() == reflect.Slice:
		return "list of " + typeName(t.Elem()) + "s"
	case t.Kind() == reflect.Map:
		return "table of " + typeName(t.Elem()) + "s"
	}
	return t.String()
}

// ownerOf names the Go struct type that holds key's field.
func ownerOf(key string) string {
	t := reflect.TypeOf(Config{})
	parts := strings.Split(key, ".")
	for _, part := range parts[:len(parts)-1] {
		for i := 0; i < t.NumField(); i++ {
			if name, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ","); name == part {
				t = t.Field(i).Type
				break
			}
		}
	}
	return t.Name()
}

func escapeCell(s string) string {
	s = strings.ReplaceAll(s, "|", "\\|")
	return strings.ReplaceAll(s, "\n", " ")
}

// SortedKeys is Keys sorted, for messages.
func SortedKeys() []string {
	k := Keys()
	sort.Strings(k)
	return k
}
