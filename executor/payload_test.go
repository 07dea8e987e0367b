package executor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestDecodeSamplePayload(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/payload.json")
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodePayload(data)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID != "4242" || p.Project != "group/app" || p.JobName != "build" || p.Ref != "main" || p.RefType != "branch" || p.Stage != "test" {
		t.Errorf("identity: %+v", p)
	}
	if strings.Contains(p.RepoURL, "glcbt") || p.RepoURL != "https://gitlab.example.com/group/app.git" {
		t.Errorf("repo URL %q still carries credentials", p.RepoURL)
	}
	if len(p.Steps) != 1 || p.Steps[0].Name != "script" || len(p.Steps[0].Script) != 2 || p.Steps[0].Timeout != 3600 {
		t.Errorf("steps: %+v", p.Steps)
	}
	if p.Image.Name != "" || len(p.Image.Other) != 0 {
		t.Errorf("image: %+v (the runner's empty executor_opts must count as empty)", p.Image)
	}
	if p.Credentials != 1 || p.Artifacts != 0 || p.Cache != 0 || p.Dependencies != 0 || len(p.Services) != 0 {
		t.Errorf("lists: %+v", p)
	}
	var greeting *Variable
	for i := range p.Variables {
		if p.Variables[i].Key == "GREETING" {
			greeting = &p.Variables[i]
		}
	}
	if greeting == nil || greeting.Value != "hello" || !greeting.Public {
		t.Errorf("GREETING: %+v", greeting)
	}
	if len(p.Digest) != 64 {
		t.Errorf("digest %q", p.Digest)
	}
}

func TestDecodeRefuses(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("testdata/payload.json")
	if err != nil {
		t.Fatal(err)
	}
	good := string(data)
	replace := func(old, new string) string {
		t.Helper()
		if !strings.Contains(good, old) {
			t.Fatalf("sample lacks %q", old)
		}
		return strings.Replace(good, old, new, 1)
	}
	cases := map[string]struct{ payload, want string }{
		"empty":                {"", "unexpected end"},
		"array":                {"[]", "not a JSON object"},
		"truncated":            {good[:len(good)/2], "not valid JSON"},
		"trailing":             {good + "{}", "after top-level value"},
		"invalid UTF-8":        {replace(`"hello"`, "\"h\xe9llo\""), "not valid UTF-8"},
		"dup top":              {replace(`{"id":4242`, `{"id":4242,"id":1`), `duplicate key "id"`},
		"dup escaped":          {replace(`{"id":4242`, `{"id":4242,"\u0069d":1`), `duplicate key "id"`},
		"dup nested":           {replace(`"name":"build"`, `"name":"build","name":"deploy"`), `duplicate key "name"`},
		"dup in array item":    {replace(`"key":"GREETING"`, `"key":"GREETING","key":"BASH_ENV"`), `duplicate key "key"`},
		"dup deep":             {replace(`"platform":""`, `"platform":"","platform":"x"`), `duplicate key "platform"`},
		"unknown top":          {replace(`{"id":4242`, `{"id":4242,"before_script":[]`), `unknown top-level key "before_script"`},
		"case variant top":     {replace(`{"id":4242`, `{"id":4242,"Steps":[]`), `unknown top-level key "Steps"`},
		"unknown step key":     {replace(`"when":"on_success"`, `"when":"on_success","Script":["x"]`), `unknown key "Script"`},
		"unknown variable key": {replace(`"key":"GREETING"`, `"key":"GREETING","expand":true`), `unknown key "expand"`},
		"id string":            {replace(`"id":4242`, `"id":"4242"`), "not a positive decimal integer"},
		"id zero":              {replace(`"id":4242`, `"id":0`), "not a positive decimal integer"},
		"id negative":          {replace(`"id":4242`, `"id":-1`), "not a positive decimal integer"},
		"id float":             {replace(`"id":4242`, `"id":4242.0`), "not a positive decimal integer"},
		"id exponent":          {replace(`"id":4242`, `"id":4e3`), "not a positive decimal integer"},
		"id huge":              {replace(`"id":4242`, `"id":12345678901234567890`), "not a positive decimal integer"},
		"no id":                {replace(`"id":4242,`, ``), "no job id"},
		"script not strings":   {replace(`"script":["echo`, `"script":[1,"echo`), "not a list of strings"},
		"variables object":     {replace(`"variables":[`, `"variables":{"a":`), ""},
		"deep nesting":         {replace(`"suspend_options":{}`, `"suspend_options":`+strings.Repeat("[", 40)+strings.Repeat("]", 40)), "nested deeper"},
		"ref not string":       {replace(`"ref":"main"`, `"ref":["main"]`), "git_info.ref is not a string"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := DecodePayload([]byte(c.payload))
			var pe *PayloadError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a PayloadError", err)
			}
			if c.want != "" && !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestDecodeImageFields(t *testing.T) {
	t.Parallel()
	payload := `{"id":1,"image":{"name":"alpine@sha256:` + strings.Repeat("a", 64) + `","entrypoint":["/bin/sh"],"alias":"","executor_opts":{"docker":{"platform":"","user":""}}},` +
		`"services":[{"name":"db","command":["x"]},{"name":"cache","executor_opts":{"docker":{"user":0}}}]}`
	p, err := DecodePayload([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(p.Image.Other, ",") != "entrypoint" {
		t.Errorf("image other: %v", p.Image.Other)
	}
	if len(p.Services) != 2 || strings.Join(p.Services[0].Other, ",") != "command" || len(p.Services[1].Other) != 0 {
		t.Errorf("services: %+v", p.Services)
	}
}

func TestProjectFallsBackToVariable(t *testing.T) {
	t.Parallel()
	p, err := DecodePayload([]byte(`{"id":7,"job_info":{"name":"b"},"variables":[{"key":"CI_PROJECT_PATH","value":"g/p"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Project != "g/p" {
		t.Errorf("project %q", p.Project)
	}
}

func TestCleanURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://gitlab-ci-token:secret@gitlab.example.com/g/p.git": "https://gitlab.example.com/g/p.git",
		"https://gitlab.example.com/g/p.git":                        "https://gitlab.example.com/g/p.git",
		"https://user:p%zz@host/x":                                  "https://host/x",
	} {
		if got := cleanURL(in); got != want {
			t.Errorf("cleanURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzDecodePayload: the decoder never panics, and what it accepts is valid
// UTF-8 JSON with a digit-only id, whose variables and steps it reports.
func FuzzDecodePayload(f *testing.F) {
	if data, err := os.ReadFile("testdata/payload.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"id":1}`))
	f.Add([]byte(`{"id":1,"id":2}`))
	f.Add([]byte(`{"id":1,"steps":[{"name":"script","script":["a"]}],"variables":[{"key":"K","value":"v"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := DecodePayload(data)
		if err != nil {
			var pe *PayloadError
			if !errors.As(err, &pe) {
				t.Fatalf("error of type %T: %v", err, err)
			}
			return
		}
		if !utf8.Valid(data) {
			t.Fatal("accepted invalid UTF-8")
		}
		if !jobIDPattern.MatchString(p.ID) {
			t.Fatalf("accepted id %q", p.ID)
		}
		if strings.ContainsAny(p.ID, "/.") {
			t.Fatalf("id %q could name a path", p.ID)
		}
		if err := tokenWalk(data); err != nil {
			t.Fatalf("accepted, but the reference walk refuses it: %v", err)
		}
	})
}

// FuzzCheckJSON compares checkJSON with an independent reference built on
// encoding/json's tokenizer: they must agree on every input.
func FuzzCheckJSON(f *testing.F) {
	for _, s := range []string{`{}`, `{"a":1,"a":2}`, `{"a":{"b":[{"c":1,"c":2}]}}`, `{"a":"\u0061","\u0061":1}`,
		`{"a\"b":1,"a\u0022b":2}`, `{"x":[1,2,{"y":true,"z":null}],"k":"v"}`, `[1]`, `{"a":1}{}`, `{"a":"\\","b":1}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, want := checkJSON(data), tokenWalk(data)
		if (got == nil) != (want == nil) {
			t.Fatalf("checkJSON: %v; reference: %v", got, want)
		}
	})
}

// tokenWalk is the reference duplicate-key check: json.Decoder.Token
// unescapes keys itself, so it shares nothing with checkJSON's scanner.
func tokenWalk(data []byte) error {
	if !utf8.Valid(data) {
		return errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	type frame struct {
		obj, expectKey bool
		keys           map[string]bool
	}
	var stack []*frame
	done := false
	valueDone := func() {
		if len(stack) == 0 {
			done = true
		} else if top := stack[len(stack)-1]; top.obj {
			top.expectKey = true
		}
	}
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !done {
				return errors.New("unexpected end")
			}
			return nil
		}
		if err != nil {
			return err
		}
		if done {
			return errors.New("trailing data")
		}
		if len(stack) == 0 {
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return errors.New("not an object")
			}
		}
		if n := len(stack); n > 0 && stack[n-1].obj && stack[n-1].expectKey {
			top := stack[n-1]
			if k, ok := tok.(string); ok {
				if top.keys[k] {
					return fmt.Errorf("duplicate %q", k)
				}
				top.keys[k] = true
				top.expectKey = false
			} else {
				stack = stack[:n-1]
				valueDone()
			}
			continue
		}
		if d, ok := tok.(json.Delim); ok {
			if d == '{' || d == '[' {
				if len(stack) >= maxJSONDepth {
					return errors.New("too deep")
				}
				stack = append(stack, &frame{obj: d == '{', expectKey: d == '{', keys: map[string]bool{}})
			} else {
				stack = stack[:len(stack)-1]
				valueDone()
			}
			continue
		}
		valueDone()
	}
}
