package smps

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
)

func TestMeshTypeNamesAndNumbers(t *testing.T) {
	// The numbering is the wire format: pin it against the spec's list.
	want := map[MeshType]string{
		0: "INVALID_MESH", 1: "APP_MESH", 2: "CONSUL", 3: "ISTIO", 4: "KUMA", 5: "LINKERD", 6: "TRAEFIK_MESH",
		7: "OCTARINE", 8: "NETWORK_SERVICE_MESH", 9: "TANZU", 10: "OPEN_SERVICE_MESH", 11: "NGINX_SERVICE_MESH",
		12: "CILIUM_SERVICE_MESH",
	}
	for n, name := range want {
		if got := n.String(); got != name {
			t.Errorf("MeshType(%d).String() = %q, want %q", n, got, name)
		}
		if !n.IsKnown() {
			t.Errorf("MeshType(%d).IsKnown() = false", n)
		}
		for _, in := range []string{name, strings.ToLower(name), strconv.Itoa(int(n)), strings.ReplaceAll(strings.ToLower(name), "_", "-")} {
			if got, err := ParseMeshType(in); err != nil || got != n {
				t.Errorf("ParseMeshType(%q) = %v, %v; want %v", in, got, err, n)
			}
		}
	}
	if MeshType(13).IsKnown() || MeshType(-1).IsKnown() {
		t.Error("values outside 0..12 reported as known")
	}
	if got := MeshType(42).String(); got != "42" {
		t.Errorf("MeshType(42).String() = %q", got)
	}
}

func TestParseMeshTypeAliasesAndErrors(t *testing.T) {
	for in, want := range map[string]MeshType{
		"istio": MeshTypeIstio, " Istio ": MeshTypeIstio, "osm": MeshTypeOpenServiceMesh, "cilium": MeshTypeCiliumServiceMesh,
		"traefik mesh": MeshTypeTraefikMesh, "maesh": MeshTypeTraefikMesh, "appmesh": MeshTypeAppMesh, "nsm": MeshTypeNetworkServiceMesh,
		"nginx": MeshTypeNginxServiceMesh,
	} {
		if got, err := ParseMeshType(in); err != nil || got != want {
			t.Errorf("ParseMeshType(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for in, msg := range map[string]string{
		"13":      "13 is not a known ServiceMesh.Type (0..12)",
		"-1":      "-1 is not a known ServiceMesh.Type (0..12)",
		"":        `"" is not a known ServiceMesh.Type`,
		"envoy":   `"envoy" is not a known ServiceMesh.Type (one of INVALID_MESH, APP_MESH,`,
		"3.0":     `"3.0" is not a known ServiceMesh.Type`,
		"9999999": "9999999 is not a known ServiceMesh.Type",
	} {
		if _, err := ParseMeshType(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseMeshType(%q) error = %v, want %q", in, err, msg)
		}
	}
}

func TestProtocolAndApplicationProtocol(t *testing.T) {
	for n, name := range map[Protocol]string{0: "INVALID", 1: "HTTP", 2: "TCP", 3: "UDP", 4: "GRPC"} {
		if n.String() != name {
			t.Errorf("Protocol(%d).String() = %q", n, n.String())
		}
		if got, err := ParseProtocol(strings.ToLower(name)); err != nil || got != n {
			t.Errorf("ParseProtocol(%q) = %v, %v", name, got, err)
		}
		if got, err := ParseProtocol(strconv.Itoa(int(n))); err != nil || got != n {
			t.Errorf("ParseProtocol(%d) = %v, %v", n, got, err)
		}
	}
	if _, err := ParseProtocol("quic"); err == nil {
		t.Error("ParseProtocol(quic) succeeded")
	}
	if _, err := ParseProtocol("5"); err == nil {
		t.Error("ParseProtocol(5) succeeded")
	}
	for n, name := range map[ApplicationProtocol]string{0: "INVALID", 1: "HTTP", 2: "HTTPS"} {
		if n.String() != name {
			t.Errorf("ApplicationProtocol(%d).String() = %q", n, n.String())
		}
		if got, err := ParseApplicationProtocol(name); err != nil || got != n {
			t.Errorf("ParseApplicationProtocol(%q) = %v, %v", name, got, err)
		}
	}
	if _, err := ParseApplicationProtocol("ftp"); err == nil {
		t.Error("ParseApplicationProtocol(ftp) succeeded")
	}
}

func TestEnumJSON(t *testing.T) {
	t.Run("marshal as integers", func(t *testing.T) {
		b, err := json.Marshal(struct {
			M MeshType
			P Protocol
			A ApplicationProtocol
		}{MeshTypeLinkerd, ProtocolGRPC, ApplicationProtocolHTTPS})
		if err != nil || string(b) != `{"M":5,"P":4,"A":2}` {
			t.Errorf("got %s, %v", b, err)
		}
	})
	ok := map[string]MeshType{
		`3`: MeshTypeIstio, `"istio"`: MeshTypeIstio, `"ISTIO"`: MeshTypeIstio, `"3"`: MeshTypeIstio,
		`42`: 42, `"42"`: 42, `-1`: -1, ` 5 `: MeshTypeLinkerd,
	}
	for in, want := range ok {
		var m MeshType
		if err := json.Unmarshal([]byte(in), &m); err != nil || m != want {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", in, m, err, want)
		}
	}
	m := MeshTypeKuma
	if err := json.Unmarshal([]byte(`null`), &m); err != nil || m != MeshTypeKuma {
		t.Errorf("null changed the value to %v (%v)", m, err)
	}
	for _, in := range []string{`true`, `1.5`, `"nope"`, `{}`, `[]`, `99999999999`, `"99999999999"`} {
		var m MeshType
		if err := json.Unmarshal([]byte(in), &m); err == nil {
			t.Errorf("Unmarshal(%s) succeeded with %v", in, m)
		}
	}
	var p Protocol
	if err := json.Unmarshal([]byte(`"grpc"`), &p); err != nil || p != ProtocolGRPC {
		t.Errorf("Protocol from \"grpc\" = %v, %v", p, err)
	}
	var a ApplicationProtocol
	if err := json.Unmarshal([]byte(`"https"`), &a); err != nil || a != ApplicationProtocolHTTPS {
		t.Errorf("ApplicationProtocol from \"https\" = %v, %v", a, err)
	}
}
