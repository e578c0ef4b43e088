#!/usr/bin/env bash
# Makes a relocatable copy of a build for nodes that have no libzmq/protobuf/fmt packages and no
# network (locked-down GPU clusters): the four programs in OUT/bin, the GPU plugin
# (libtaskfarm_gpu.so, CUDA builds) and every shared library they load, except glibc and the CUDA
# driver, in OUT/lib. The binaries find them through their $ORIGIN/../lib RPATH; copy OUT
# anywhere (scp, tar) and run OUT/bin/taskfarm-worker. Test and benchmark binaries stay out.
#
# Usage: scripts/bundle.sh [--no-cuda-libs] [BUILD_DIR] [OUT_DIR]   (defaults: build, BUILD_DIR/bundle)
#   --no-cuda-libs   leave the CUDA libraries (cuBLAS, ~500 MB) out: a small bundle for CPU-only
#                    nodes, or for GPU nodes where the plugin loads the node's own CUDA libraries
set -euo pipefail
me=bundle.sh
cuda_libs=1
args=()
for a in "$@"; do
  case $a in
    --no-cuda-libs) cuda_libs=0 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "$me: unknown option '$a' (see --help)" >&2; exit 1 ;;
    *) args+=("$a") ;;
  esac
done
((${#args[@]} <= 2)) || { echo "$me: too many arguments (see --help)" >&2; exit 1; }
build=${args[0]:-build}
out=${args[1]:-$build/bundle}
[ -x "$build/bin/taskfarm-worker" ] || { echo "$me: no build in $build (run scripts/build.sh)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/bin" "$out/lib"
files=()
for p in taskfarm taskfarm-sink taskfarm-worker taskfarm-ventilator; do
  [ -x "$build/bin/$p" ] || { echo "$me: $build/bin/$p is missing (build every program)" >&2; exit 1; }
  cp "$build/bin/$p" "$out/bin/"
  files+=("$out/bin/$p")
done
if [ -f "$build/bin/libtaskfarm_gpu.so" ]; then  # the worker also looks in ../lib
  cp "$build/bin/libtaskfarm_gpu.so" "$out/lib/"
  files+=("$out/lib/libtaskfarm_gpu.so")
fi
# glibc's own libraries and the driver come from the node; the CUDA libraries too with
# --no-cuda-libs; everything else travels.
skip='^(linux-vdso|ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libresolv\.so|libutil\.so|libcuda\.so|libnvidia)'
cuda='^(libcu[A-Za-z]*|libnv[A-Za-z]*)\.so'
for f in "${files[@]}"; do
  ldd "$f" 2>/dev/null | awk '/=> \// {print $1, $3}' | while read -r name path; do
    [[ $name =~ $skip ]] && continue
    ((cuda_libs)) || ! [[ $name =~ $cuda ]] || continue
    [ -e "$out/lib/$name" ] || cp -L "$path" "$out/lib/$name"
  done
done
echo "bundle: $out ($(ls "$out/bin" | wc -l) programs, $(ls "$out/lib" | wc -l) libraries, $(du -sh "$out" | cut -f1))"
