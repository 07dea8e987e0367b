package main

import (
	"crypto/sha256"
	"debug/buildinfo"
	"fmt"
	"os"
	"path"
	"runtime/debug"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// writeSBOM writes a CycloneDX JSON SBOM of the Go binary at bin, from the
// build info the toolchain embedded in it: the main module, every module
// linked in (with its go.sum hash), the toolchain and the build settings.
// Reading the binary rather than go.mod lists what shipped, not what was
// declared. The timestamp is the source date and the serial number is
// derived from the binary's hash, so the SBOM is reproducible too.
func writeSBOM(bin, out string, r *Result) error {
	bi, err := buildinfo.ReadFile(bin)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	bom := newSBOM(bi, fmt.Sprintf("%x", sum), r)
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := cdx.NewBOMEncoder(f, cdx.BOMFileFormatJSON).SetPretty(true).Encode(bom); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func newSBOM(bi *debug.BuildInfo, binSHA256 string, r *Result) *cdx.BOM {
	epoch := r.Epoch
	main := cdx.Component{
		BOMRef:     purl(bi.Main.Path, r.Version),
		Type:       cdx.ComponentTypeApplication,
		Name:       path.Base(bi.Path), // writ, writ-sandbox-init
		Version:    r.Version,
		PackageURL: purl(bi.Main.Path, r.Version),
		Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: binSHA256}},
		Licenses:   &cdx.Licenses{{License: &cdx.License{ID: "Apache-2.0"}}},
	}
	props := []cdx.Property{{Name: "go:toolchain", Value: bi.GoVersion}, {Name: "vcs:commit", Value: r.Commit}, {Name: "vcs:modified", Value: fmt.Sprint(r.Modified)}}
	for _, s := range bi.Settings {
		props = append(props, cdx.Property{Name: "go:build:" + s.Key, Value: s.Value})
	}
	main.Properties = &props

	var comps []cdx.Component
	var refs []string
	for _, d := range bi.Deps {
		m := d
		if d.Replace != nil {
			m = d.Replace
		}
		c := cdx.Component{BOMRef: purl(d.Path, m.Version), Type: cdx.ComponentTypeLibrary, Name: d.Path,
			Version: m.Version, PackageURL: purl(d.Path, m.Version), Scope: cdx.ScopeRequired}
		if m.Sum != "" {
			c.Properties = &[]cdx.Property{{Name: "go:module:sum", Value: m.Sum}}
		}
		comps = append(comps, c)
		refs = append(refs, c.BOMRef)
	}
	bom := cdx.NewBOM()
	// A serial number derived from the binary: the same binary, the same SBOM.
	bom.SerialNumber = "urn:uuid:" + uuidFromHex(binSHA256)
	bom.Metadata = &cdx.Metadata{
		Timestamp: epoch.UTC().Format(time.RFC3339),
		Component: &main,
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{Type: cdx.ComponentTypeLibrary,
			Name: "github.com/CycloneDX/cyclonedx-go", Group: "CycloneDX"}}},
	}
	bom.Components = &comps
	bom.Dependencies = &[]cdx.Dependency{{Ref: main.BOMRef, Dependencies: &refs}}
	return bom
}

func purl(path, version string) string {
	return "pkg:golang/" + path + "@" + version
}

// uuidFromHex formats the first 16 bytes of a hex digest as a version-5
// style UUID.
func uuidFromHex(h string) string {
	b := []byte(h[:32])
	b[12] = '5'
	b[16] = "89ab"[int(b[16])%4]
	return fmt.Sprintf("%s-%s-%s-%s-%s", b[0:8], b[8:12], b[12:16], b[16:20], b[20:32])
}
