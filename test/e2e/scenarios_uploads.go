package e2e

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Scenarios for signed uploads (issue #18): writ uploads exactly the files
// the entry's uploads name, through GitLab's artifacts API, and nothing
// else. The happy path uploads a plan and a JUnit report, as the runner's
// own uploader would; each attack uploads the deploy tool's credentials or
// a host file through the pass-through executor, and writ refuses it.

// UploadRefused: writ admits the job and runs its signed script, then
// refuses the upload (a link out of the build directory, more than the
// entry's max_bytes): the job fails saying why, and nothing is uploaded.
const UploadRefused Verdict = "upload refused"

// The deploy job of allowlist version 8 (uploadsAllowlist) also writes a
// plan and a JUnit report.
const (
	UploadPlanLine  = `mkdir -p plan && echo "plan for $DEPLOY_TARGET" > plan/app.tfplan`
	UploadJUnitLine = `printf '<testsuite name="deploy" tests="1"><testcase name="deployed"/></testsuite>\n' > junit.xml`
	UploadJUnit     = `<testsuite name="deploy" tests="1"><testcase name="deployed"/></testsuite>` + "\n"
)

// uploadsSetup is a deploy job with uploads: extra script lines after
// LegitScript, and the JUnit report's path.
type uploadsSetup struct {
	Extra []string
	JUnit string
}

func defaultUploads() uploadsSetup {
	return uploadsSetup{Extra: []string{UploadPlanLine, UploadJUnitLine}, JUnit: "junit.xml"}
}

// script is the deploy's script lines.
func (u uploadsSetup) script() []string { return append([]string{LegitScript}, u.Extra...) }

// artifacts is GitLab's artifacts list for the job: what
// `artifacts: {name: plan, paths: [plan], expire_in: 1 year, reports: {junit: …}}`
// becomes in the runner's payload.
func (u uploadsSetup) artifacts() []Artifact {
	return []Artifact{
		{Name: "plan", Paths: []string{"plan"}, When: "on_success", Type: "archive", Format: "zip", ExpireIn: "1 year"},
		// GitLab names a report itself (Ci::JobArtifact::DEFAULT_FILE_NAMES)
		// and uploads it whatever the job's outcome.
		{Name: "junit.xml", Paths: []string{u.JUnit}, When: "always", Type: "junit", Format: "gzip", ExpireIn: "1 year"},
	}
}

// apply publishes allowlist version 8, whose production deploy entry runs
// u's script and uploads u's artifacts, and makes the payload the job that
// entry admits.
func (u uploadsSetup) apply(f *Fixture) error {
	err := publishAllowlist(f, func(y string) string {
		y = versionLine.ReplaceAllString(y, "version: 8")
		lines := "        - " + yamlQuote(LegitScript) + "\n"
		for _, l := range u.Extra {
			lines += "        - " + yamlQuote(l) + "\n"
		}
		y = strings.Replace(y, "        - "+yamlQuote(LegitScript)+"\n", lines, 1)
		return strings.Replace(y, "      timeout: 15m\n", "      timeout: 15m\n"+
			"      uploads:\n"+
			"        max_bytes: 1048576\n"+
			"        artifacts:\n"+
			"          - type: archive\n            name: plan\n            paths: [plan]\n            when: on_success\n            expire_in: 1 year\n"+
			"          - type: junit\n            name: junit.xml\n            paths: ["+yamlQuote(u.JUnit)+"]\n            when: always\n            expire_in: 1 year\n", 1)
	})
	if err != nil {
		return err
	}
	f.Payload.Step("script").Script = u.script()
	f.Payload.Artifacts = u.artifacts()
	return nil
}

// UploadedFiles decodes an upload: a zip archive's files, or a gzip
// artifact's members (named by the comment the runner and writ give each,
// the file's path), path → content.
func UploadedFiles(u Upload) (map[string]string, error) {
	out := map[string]string{}
	switch u.Format {
	case "zip":
		zr, err := zip.NewReader(bytes.NewReader(u.Data), int64(len(u.Data)))
		if err != nil {
			return nil, err
		}
		for _, f := range zr.File {
			if f.FileInfo().IsDir() {
				continue
			}
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			b, err := io.ReadAll(rc)
			rc.Close()
			if err != nil {
				return nil, err
			}
			out[f.Name] = string(b)
		}
	case "gzip":
		// One member per file, read one at a time (compress/gzip's
		// Multistream example).
		br := bytes.NewReader(u.Data)
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		for {
			zr.Multistream(false)
			b, err := io.ReadAll(zr)
			if err != nil {
				return nil, err
			}
			name := zr.Comment
			if name == "" {
				name = zr.Name
			}
			out[name] = string(b)
			if err := zr.Reset(br); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("upload %s has format %q", u.Filename, u.Format)
	}
	return out, nil
}

// uploadsCarry reports whether any upload holds text.
func uploadsCarry(o Outcome, text string) bool {
	for _, u := range o.Uploads {
		if bytes.Contains(u.Data, []byte(text)) {
			return true
		}
		if files, err := UploadedFiles(u); err == nil {
			for name, content := range files {
				if strings.Contains(name, text) || strings.Contains(content, text) {
					return true
				}
			}
		}
	}
	return false
}

// uploadedExactly checks that the uploads are the plan archive and the
// JUnit report of defaultUploads, and nothing else.
func uploadedExactly(o Outcome) error {
	if len(o.Uploads) != 2 {
		return fmt.Errorf("%d uploads, want the plan archive and the JUnit report", len(o.Uploads))
	}
	type want struct {
		typ, format, expire string
		files               map[string]string
	}
	for i, w := range []want{
		{"archive", "zip", "1 year", map[string]string{"plan/app.tfplan": "plan for " + LegitTarget + "\n"}},
		{"junit", "gzip", "1 year", map[string]string{"junit.xml": UploadJUnit}},
	} {
		u := o.Uploads[i]
		if u.Type != w.typ || u.Format != w.format || u.ExpireIn != w.expire {
			return fmt.Errorf("upload %d: type %q format %q expire_in %q, want %q %q %q", i, u.Type, u.Format, u.ExpireIn, w.typ, w.format, w.expire)
		}
		files, err := UploadedFiles(u)
		if err != nil {
			return fmt.Errorf("upload %d: %v", i, err)
		}
		if fmt.Sprint(sortedMap(files)) != fmt.Sprint(sortedMap(w.files)) {
			return fmt.Errorf("upload %d holds %q, want %q", i, sortedMap(files), sortedMap(w.files))
		}
	}
	return nil
}

func sortedMap(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// nothingUploaded: GitLab received no upload for the job.
func nothingUploaded(_ *Fixture, o Outcome) error {
	if len(o.Uploads) > 0 {
		return fmt.Errorf("%d upload(s) reached GitLab (the first: %s, %d bytes)", len(o.Uploads), o.Uploads[0].Filename, len(o.Uploads[0].Data))
	}
	return nil
}

// credentialsUploaded: the deploy tool's credentials reached GitLab.
func credentialsUploaded(_ *Fixture, o Outcome) error {
	if !uploadsCarry(o, "credential-for-"+LegitTarget) {
		return fmt.Errorf("no upload carried the deploy tool's credentials (%d uploads)", len(o.Uploads))
	}
	return nil
}

// hostSecret is the content of the host file the link attack reaches.
func hostSecret(f *Fixture) string { return "host-secret-" + f.Canary.Name }

func init() {
	Scenarios = append(Scenarios,
		Scenario{
			Name: "uploads-plan-and-junit", Category: CatPoisoning, Robustness: true,
			Description: "Allowlist version 8 lets the deploy upload its plan (a zip archive kept a year) and a JUnit report; GitLab's artifacts say the same.",
			Mutate:      func(f *Fixture) error { return defaultUploads().apply(f) },
			Shows:       "the runner's own uploader sends the same plan archive and JUnit report",
			PassThrough: func(f *Fixture, o Outcome) error { return uploadedExactly(o) },
			Writ:        Expectation{Verdict: Admit, Reason: "writ: admitted", Detail: "writ: uploaded junit artifact junit.xml.gz (1 file(s)"},
			WritCheck: func(f *Fixture, o Outcome) error {
				if err := uploadedExactly(o); err != nil {
					return err
				}
				if uploadsCarry(o, ".deploy-credentials") || uploadsCarry(o, "credential-for-") {
					return fmt.Errorf("an upload carried the deploy tool's credentials")
				}
				return nil
			},
		},
		Scenario{
			Name: "uploads-path-not-in-entry", Category: CatPoisoning,
			Description: "The entry uploads plan/; GitLab adds .deploy-credentials to the archive's paths.",
			Mutate: func(f *Fixture) error {
				if err := defaultUploads().apply(f); err != nil {
					return err
				}
				f.Payload.Artifacts[0].Paths = append(f.Payload.Artifacts[0].Paths, ".deploy-credentials")
				return nil
			},
			Shows:       "the deploy tool's credentials uploaded in the plan archive",
			PassThrough: credentialsUploaded,
			Writ:        refuse("artifacts", "artifacts[0] paths differ from the allowlist entry's uploads"),
			WritCheck:   nothingUploaded,
		},
		Scenario{
			Name: "uploads-dotdot-path", Category: CatPoisoning,
			Description: "GitLab rewrites the archive's path to plan/../.deploy-credentials: inside the build directory once cleaned, and not the entry's path.",
			Mutate: func(f *Fixture) error {
				if err := defaultUploads().apply(f); err != nil {
					return err
				}
				f.Payload.Artifacts[0].Paths = []string{"plan/../.deploy-credentials"}
				return nil
			},
			Shows:       "the deploy tool's credentials uploaded through a ../ path",
			PassThrough: credentialsUploaded,
			Writ:        refuse("artifacts", `artifacts[0] paths differ from the allowlist entry's uploads`),
			WritCheck:   nothingUploaded,
		},
		Scenario{
			Name: "uploads-extra-untracked-artifact", Category: CatPoisoning,
			Description: "GitLab appends a third artifact, untracked: true, to the entry's two: every file of the work tree, credentials included.",
			Mutate: func(f *Fixture) error {
				if err := defaultUploads().apply(f); err != nil {
					return err
				}
				f.Payload.Artifacts = append(f.Payload.Artifacts, Artifact{Name: "everything", Untracked: true, When: "always", Type: "archive", Format: "zip"})
				return nil
			},
			Shows:       "the deploy tool's credentials uploaded as an extra artifact",
			PassThrough: credentialsUploaded,
			Writ:        refuse("artifacts", "the job has 3 artifact(s), the allowlist entry's uploads list 2"),
			WritCheck:   nothingUploaded,
		},
		Scenario{
			Name: "uploads-symlink-escapes-build-dir", Category: CatPoisoning,
			Description: "The job (a signed script here; any tool it runs could do the same) makes reports/ a symbolic link to a host directory, as it could to /etc or writ's state; the entry uploads reports/junit.xml, which the uploader would read through the link.",
			Mutate: func(f *Fixture) error {
				if err := os.WriteFile(filepath.Join(f.Scratch, "junit.xml"), []byte(hostSecret(f)), 0o644); err != nil {
					return err
				}
				u := defaultUploads()
				u.Extra = append(u.Extra, "ln -s "+f.Scratch+" reports")
				u.JUnit = "reports/junit.xml"
				return u.apply(f)
			},
			Shows: "a host file outside the build directory uploaded as the JUnit report",
			PassThrough: func(f *Fixture, o Outcome) error {
				if !uploadsCarry(o, hostSecret(f)) {
					return fmt.Errorf("no upload carried the host file (%d uploads)", len(o.Uploads))
				}
				return nil
			},
			Writ:      Expectation{Verdict: UploadRefused, Reason: "upload refused, nothing was uploaded", Detail: "reports is a symbolic link: writ never follows one"},
			WritCheck: nothingUploaded,
		},
	)
}
