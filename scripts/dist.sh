#!/usr/bin/env bash
# Release archives of kubectl-mesh and the krew manifest that points at them (`make dist`).
#
#   scripts/dist.sh [build] [pack] [manifest]     no argument: all three, in that order
#
#   build     cross-builds kubectl-mesh (CGO_ENABLED=0) for linux, darwin and windows on amd64
#             and arm64 into $DIST_DIR/bin/<os>_<arch>/
#   pack      packs each binary with LICENSE (krew requires one) and, except on windows, the
#             kubectl_complete-mesh completion helper: kubectl-mesh_<version>_<os>_<arch>.tar.gz
#             (.zip for windows); writes $DIST_DIR/sha256sums.txt
#   manifest  writes $DIST_DIR/mesh.yaml from krew.yaml: the version, each archive's URI and its
#             sha256 (quoted: an all-digit hash would otherwise be read as a number)
#
# Environment:
#   VERSION            release version, semver with a v prefix (default: krew.yaml's spec.version)
#   DIST_DIR           output directory (default: dist/ in the repository)
#   DIST_URI_BASE      where the archives will be downloaded from (default:
#                      https://github.com/kubectl-mesh/kubectl-mesh/releases/download/$VERSION)
#   SOURCE_DATE_EPOCH  timestamp of the files in the archives (default: now); with it set, two
#                      runs on the same binaries produce byte-identical archives
#   GO                 the go command (default: go)
# Needs GNU tar, gzip, sha256sum, and zip or python3.
set -euo pipefail
shopt -s inherit_errexit

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TEMPLATE="$ROOT/krew.yaml"
GO=${GO:-go}
PLATFORMS=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64 windows/arm64)

die() { echo "dist: $*" >&2; exit 1; }

# spec.version of the template: the only `version:` key indented by two spaces.
template_version() { sed -n 's/^  version: *\(v[^ ]*\) *$/\1/p' "$TEMPLATE" | head -n 1; }

VERSION=${VERSION:-$(template_version)}
SEMVER='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$'
[[ $VERSION =~ $SEMVER ]] || die "VERSION '$VERSION' is not a semantic version with a v prefix (e.g. v0.1.0), as krew requires"
DIST_DIR=${DIST_DIR:-$ROOT/dist}
URI_BASE=${DIST_URI_BASE:-https://github.com/kubectl-mesh/kubectl-mesh/releases/download/$VERSION}
URI_BASE=${URI_BASE%/}
EPOCH=${SOURCE_DATE_EPOCH:-$(date +%s)}
# zip cannot store times before 1980.
((EPOCH >= 315532800)) || EPOCH=315532800

exe() { [[ $1 == windows ]] && echo .exe || true; }
archive() { # archive OS ARCH -> file name
	local ext=tar.gz
	[[ $1 == windows ]] && ext=zip
	echo "kubectl-mesh_${VERSION}_$1_$2.$ext"
}

build() {
	local p os arch
	for p in "${PLATFORMS[@]}"; do
		os=${p%/*} arch=${p#*/}
		echo "dist: building kubectl-mesh $VERSION for $os/$arch"
		(cd "$ROOT" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath \
			-ldflags "-s -w -X github.com/kubectl-mesh/kubectl-mesh/internal/version.Version=$VERSION" \
			-o "$DIST_DIR/bin/${os}_$arch/kubectl-mesh$(exe "$os")" ./cmd/kubectl-mesh)
	done
}

zip_dir() { # zip_dir DIR ARCHIVE FILE...: a zip of DIR's FILEs, no directory entries
	local dir=$1 out=$2
	shift 2
	if command -v zip >/dev/null; then
		(cd "$dir" && zip -q -X "$out" "$@")
	elif command -v python3 >/dev/null; then
		(cd "$dir" && python3 -c '
import sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for f in sys.argv[2:]:
        z.write(f)
' "$out" "$@")
	else
		die "neither zip nor python3 found to pack the windows archives (apt-get install zip)"
	fi
}

pack() {
	local p os arch bin stage out files listing
	: >"$DIST_DIR/sha256sums.txt.tmp"
	for p in "${PLATFORMS[@]}"; do
		os=${p%/*} arch=${p#*/}
		bin="kubectl-mesh$(exe "$os")"
		[[ -f "$DIST_DIR/bin/${os}_$arch/$bin" ]] || die "$DIST_DIR/bin/${os}_$arch/$bin is missing: run '$0 build' first"
		stage="$DIST_DIR/stage/${os}_$arch"
		rm -rf "$stage"
		mkdir -p "$stage"
		install -m 0755 "$DIST_DIR/bin/${os}_$arch/$bin" "$stage/$bin"
		install -m 0644 "$ROOT/LICENSE" "$stage/LICENSE"
		files=("$bin" LICENSE)
		# The helper is a POSIX shell script: kubectl on Windows cannot run it.
		if [[ $os != windows ]]; then
			install -m 0755 "$ROOT/scripts/kubectl_complete-mesh" "$stage/kubectl_complete-mesh"
			files+=(kubectl_complete-mesh)
		fi
		touch -d "@$EPOCH" "${files[@]/#/$stage/}"
		out="$DIST_DIR/$(archive "$os" "$arch")"
		rm -f "$out"
		if [[ $os == windows ]]; then
			zip_dir "$stage" "$out" "${files[@]}"
			listing=$(unzip -Z1 "$out" 2>/dev/null || python3 -c 'import sys, zipfile; print("\n".join(zipfile.ZipFile(sys.argv[1]).namelist()))' "$out")
		else
			tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" \
				-C "$stage" -cf - "${files[@]}" | gzip -n -9 >"$out"
			listing=$(tar -tzf "$out")
		fi
		grep -qx LICENSE <<<"$listing" || die "$out has no LICENSE"
		grep -qx "$bin" <<<"$listing" || die "$out has no $bin"
		(cd "$DIST_DIR" && sha256sum "$(basename "$out")") >>"$DIST_DIR/sha256sums.txt.tmp"
		echo "dist: packed $(basename "$out")"
	done
	mv "$DIST_DIR/sha256sums.txt.tmp" "$DIST_DIR/sha256sums.txt"
	rm -rf "$DIST_DIR/stage"
}

manifest() {
	local sums="$DIST_DIR/sha256sums.txt" out="$DIST_DIR/mesh.yaml"
	[[ -f $sums ]] || die "$sums is missing: run '$0 pack' first"
	# One pass over the template: spec.version becomes VERSION; in each platform the selector
	# (which comes first) names os and arch, and the uri and sha256 lines after it get that
	# archive's URI and sha256. TEMPLATE comment lines are dropped.
	awk -v version="$VERSION" -v base="$URI_BASE" -v sums="$sums" '
		function fail(msg) { print "dist: krew.yaml line " NR ": " msg > "/dev/stderr"; failed = 1; exit 1 }
		function archive(os, arch) {
			return "kubectl-mesh_" version "_" os "_" arch (os == "windows" ? ".zip" : ".tar.gz")
		}
		BEGIN {
			while ((getline line < sums) > 0) { split(line, f, /  \*?/); sha[f[2]] = f[1] }
		}
		/^# TEMPLATE:/ { next }
		/^  version:/ { print "  version: " version; next }
		/^  - selector:/ { os = ""; arch = "" }
		/^        os:/ { os = $2 }
		/^        arch:/ { arch = $2 }
		/^    uri:/ {
			if (os == "" || arch == "") fail("uri before the platform selector names os and arch")
			print "    uri: " base "/" archive(os, arch); next
		}
		/^    sha256:/ {
			a = archive(os, arch)
			if (!(a in sha)) fail("no sha256 for " a " in " sums)
			print "    sha256: \"" sha[a] "\""; done[a] = 1; next
		}
		{ print }
		END {
			if (failed) exit 1
			for (a in sha) if (!(a in done)) { print "dist: krew.yaml has no platform for " a > "/dev/stderr"; exit 1 }
		}
	' "$TEMPLATE" >"$out.tmp" || { rm -f "$out.tmp"; die "could not render $out"; }
	mv "$out.tmp" "$out"
	echo "dist: wrote $out"
}

steps=("$@")
((${#steps[@]})) || steps=(build pack manifest)
mkdir -p "$DIST_DIR"
DIST_DIR=$(cd "$DIST_DIR" && pwd)
for s in "${steps[@]}"; do
	case $s in
	build | pack | manifest) "$s" ;;
	*) die "unknown step '$s' (build, pack or manifest)" ;;
	esac
done
