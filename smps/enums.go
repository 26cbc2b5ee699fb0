package smps

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// Protocol is PerformanceTestConfig.Client.Protocol: the protocol a load
// generator speaks to the endpoints under test.
//
// Like every SMPS enum it is written as its integer number, because that is
// what Meshery's protoc-generated structs produce with encoding/json.
type Protocol int32

// Protocol values (SMPS v0.6.1 numbering).
const (
	// ProtocolInvalid is the proto3 zero value: the protocol was not set.
	ProtocolInvalid Protocol = 0
	ProtocolHTTP    Protocol = 1
	ProtocolTCP     Protocol = 2
	ProtocolUDP     Protocol = 3
	ProtocolGRPC    Protocol = 4
)

var protocolNames = []string{"INVALID", "HTTP", "TCP", "UDP", "GRPC"}

// String returns the upstream enum value name ("HTTP"), or the decimal number
// for a value the spec does not define, as protobuf-go does.
func (p Protocol) String() string { return enumString(int32(p), protocolNames) }

// IsKnown reports whether p is one of the values SMPS v0.6.1 defines.
func (p Protocol) IsKnown() bool { return p >= 0 && int(p) < len(protocolNames) }

// ParseProtocol accepts a value name in any case ("http", "GRPC") or its
// number ("1"). Numbers outside the defined range are rejected.
func ParseProtocol(s string) (Protocol, error) {
	n, err := parseEnum(s, "Protocol", protocolNames, nil)
	return Protocol(n), err
}

// UnmarshalJSON accepts the integer SMPS writes, and also a name or a numeric
// string, so hand-written YAML such as `protocol: http` decodes. Unknown numbers
// are kept (proto3 enums are open) and reported by Validate with a field path.
func (p *Protocol) UnmarshalJSON(b []byte) error {
	n, ok, err := unmarshalEnum(b, "Protocol", protocolNames, nil)
	if ok {
		*p = Protocol(n)
	}
	return err
}

// MeshType is ServiceMesh.Type, the mesh implementation under test. It is used
// by ServiceMeshConfig.mesh_type and by the Meshery test-config's `mesh.type`.
type MeshType int32

// MeshType values (SMPS v0.6.1 numbering).
const (
	// MeshTypeInvalid is the proto3 zero value: no mesh type was given.
	MeshTypeInvalid            MeshType = 0
	MeshTypeAppMesh            MeshType = 1
	MeshTypeConsul             MeshType = 2
	MeshTypeIstio              MeshType = 3
	MeshTypeKuma               MeshType = 4
	MeshTypeLinkerd            MeshType = 5
	MeshTypeTraefikMesh        MeshType = 6
	MeshTypeOctarine           MeshType = 7
	MeshTypeNetworkServiceMesh MeshType = 8
	MeshTypeTanzu              MeshType = 9
	MeshTypeOpenServiceMesh    MeshType = 10
	MeshTypeNginxServiceMesh   MeshType = 11
	MeshTypeCiliumServiceMesh  MeshType = 12
)

var meshTypeNames = []string{
	"INVALID_MESH", "APP_MESH", "CONSUL", "ISTIO", "KUMA", "LINKERD", "TRAEFIK_MESH", "OCTARINE",
	"NETWORK_SERVICE_MESH", "TANZU", "OPEN_SERVICE_MESH", "NGINX_SERVICE_MESH", "CILIUM_SERVICE_MESH",
}

// meshTypeAliases are the short names people type on a command line; the
// upstream names alone would make `--mesh osm` or `--mesh cilium` fail.
// Keys are in canonical form (upper case, '-' and ' ' turned into '_').
var meshTypeAliases = map[string]int32{
	"APPMESH":            int32(MeshTypeAppMesh),
	"AWS_APP_MESH":       int32(MeshTypeAppMesh),
	"MAESH":              int32(MeshTypeTraefikMesh), // Traefik Mesh's former name, used by old SMPS versions
	"TRAEFIK":            int32(MeshTypeTraefikMesh),
	"NSM":                int32(MeshTypeNetworkServiceMesh),
	"NETWORKSERVICEMESH": int32(MeshTypeNetworkServiceMesh),
	"OSM":                int32(MeshTypeOpenServiceMesh),
	"NGINX":              int32(MeshTypeNginxServiceMesh),
	"NSMESH":             int32(MeshTypeNginxServiceMesh),
	"CILIUM":             int32(MeshTypeCiliumServiceMesh),
}

// String returns the upstream name ("ISTIO") or, for an undefined value, its
// decimal number.
func (t MeshType) String() string { return enumString(int32(t), meshTypeNames) }

// IsKnown reports whether t is one of the values SMPS v0.6.1 defines.
func (t MeshType) IsKnown() bool { return t >= 0 && int(t) < len(meshTypeNames) }

// ParseMeshType accepts an upstream name in any case with '-' or ' ' for '_'
// ("istio", "ISTIO", "open-service-mesh"), a common short name ("osm",
// "cilium", "nsm", "appmesh"), or the number ("3").
func ParseMeshType(s string) (MeshType, error) {
	n, err := parseEnum(s, "ServiceMesh.Type", meshTypeNames, meshTypeAliases)
	return MeshType(n), err
}

// UnmarshalJSON accepts the integer SMPS writes, a name, or a numeric string.
// Unknown numbers are kept for Validate to report.
func (t *MeshType) UnmarshalJSON(b []byte) error {
	n, ok, err := unmarshalEnum(b, "ServiceMesh.Type", meshTypeNames, meshTypeAliases)
	if ok {
		*t = MeshType(n)
	}
	return err
}

// ApplicationProtocol is ApplicationMetadata.application_protocol.
type ApplicationProtocol int32

// ApplicationProtocol values (SMPS v0.6.1 numbering).
const (
	// ApplicationProtocolInvalid is the proto3 zero value: not set.
	ApplicationProtocolInvalid ApplicationProtocol = 0
	ApplicationProtocolHTTP    ApplicationProtocol = 1
	ApplicationProtocolHTTPS   ApplicationProtocol = 2
)

var applicationProtocolNames = []string{"INVALID", "HTTP", "HTTPS"}

// String returns the upstream name ("HTTPS") or, for an undefined value, its
// decimal number.
func (a ApplicationProtocol) String() string { return enumString(int32(a), applicationProtocolNames) }

// IsKnown reports whether a is one of the values SMPS v0.6.1 defines.
func (a ApplicationProtocol) IsKnown() bool {
	return a >= 0 && int(a) < len(applicationProtocolNames)
}

// ParseApplicationProtocol accepts a name in any case or the number.
func ParseApplicationProtocol(s string) (ApplicationProtocol, error) {
	n, err := parseEnum(s, "ApplicationProtocol", applicationProtocolNames, nil)
	return ApplicationProtocol(n), err
}

// UnmarshalJSON accepts the integer SMPS writes, a name, or a numeric string.
func (a *ApplicationProtocol) UnmarshalJSON(b []byte) error {
	n, ok, err := unmarshalEnum(b, "ApplicationProtocol", applicationProtocolNames, nil)
	if ok {
		*a = ApplicationProtocol(n)
	}
	return err
}

func enumString(n int32, names []string) string {
	if n >= 0 && int(n) < len(names) {
		return names[n]
	}
	return strconv.FormatInt(int64(n), 10)
}

func canonicalEnumName(s string) string {
	s = strings.ToUpper(strings.TrimSpace(s))
	return strings.NewReplacer("-", "_", " ", "_").Replace(s)
}

// lookupEnumName resolves a name (not a number) to its value.
func lookupEnumName(s string, names []string, aliases map[string]int32) (int32, bool) {
	c := canonicalEnumName(s)
	for i, name := range names {
		if c == name {
			return int32(i), true
		}
	}
	n, ok := aliases[c]
	return n, ok
}

// parseEnum is the strict parser for user input (flags): names, aliases or a
// number, but only values the spec defines.
func parseEnum(s, typeName string, names []string, aliases map[string]int32) (int32, error) {
	if n, ok := lookupEnumName(s, names, aliases); ok {
		return n, nil
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32); err == nil {
		if n >= 0 && int(n) < len(names) {
			return int32(n), nil
		}
		return 0, fmt.Errorf("%d is not a known %s (0..%d)", n, typeName, len(names)-1)
	}
	return 0, fmt.Errorf("%q is not a known %s (one of %s)", s, typeName, strings.Join(names, ", "))
}

// unmarshalEnum decodes a JSON enum value. ok is false for JSON null, which
// must leave the field untouched (encoding/json's convention). Any int32 number
// is accepted, whether written as a number or a string: range errors belong to
// Validate, which can name the field.
func unmarshalEnum(b []byte, typeName string, names []string, aliases map[string]int32) (n int32, ok bool, err error) {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return 0, false, nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return 0, false, err
		}
		if v, found := lookupEnumName(s, names, aliases); found {
			return v, true, nil
		}
		v, perr := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		if perr != nil {
			return 0, false, fmt.Errorf("%q is not a known %s (one of %s, or a number)", s, typeName, strings.Join(names, ", "))
		}
		return int32(v), true, nil
	}
	v, perr := strconv.ParseInt(string(b), 10, 32)
	if perr != nil {
		return 0, false, fmt.Errorf("%s must be an int32 number or a name, got %s", typeName, truncate(string(b), 40))
	}
	return int32(v), true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
