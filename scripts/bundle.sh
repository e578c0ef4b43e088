#!/usr/bin/env bash
# Makes a relocatable copy of a build for nodes that have no libzmq/protobuf/fmt packages and no
# network (locked-down GPU clusters): the executables in OUT/bin and every shared library they
# load, except glibc and the CUDA driver, in OUT/lib. The binaries find them through their
# $ORIGIN/../lib RPATH; copy OUT anywhere (scp, tar) and run OUT/bin/taskfarm-worker.
#
# Usage: scripts/bundle.sh [BUILD_DIR] [OUT_DIR]     (defaults: build, BUILD_DIR/bundle)
set -euo pipefail
build=${1:-build}
out=${2:-$build/bundle}
[ -x "$build/bin/taskfarm-worker" ] || { echo "bundle.sh: no build in $build (run scripts/build.sh)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
shopt -s nullglob
for f in "$build"/bin/*; do
  [ -f "$f" ] && [ -x "$f" ] && cp "$f" "$out/bin/"
done
# glibc's own libraries and the driver come from the node; everything else travels.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libcuda\.so|libnvidia)'
for f in "$out"/bin/*; do
  ldd "$f" 2>/dev/null | awk '/=> \// {print $1, $3}' | while read -r name path; do
    [[ $name =~ $skip ]] && continue
    [ -e "$out/lib/$name" ] || cp -L "$path" "$out/lib/$name"
  done
done
echo "bundle: $out ($(ls "$out/bin" | wc -l) programs, $(ls "$out/lib" | wc -l) libraries, $(du -sh "$out" | cut -f1))"
