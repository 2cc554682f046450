#!/usr/bin/env bash
# gpu-check.sh — carries diplip's GPU check to a lent GPU machine in chunks and runs it
# there (docs/gpu-check.md has the exact sequence of device calls).
#
#   scripts/gpu-check.sh pack      here: bundle the ONNX Runtime GPU libraries, the check
#                                  binary (cmd/diplip-gpucheck, links only libc), the models
#                                  and the photos into xz-compressed chunks under
#                                  $GPU_BUNDLE, each under 64 MiB, listed with their
#                                  sha256 in MANIFEST.sha256 (scripts/setup.sh gpu-libs
#                                  runs this)
#   scripts/gpu-check.sh receive   there, after each call that carried one chunk: verify
#                                  the chunks present, say which are still missing
#   scripts/gpu-check.sh run [ARG…] there, once all chunks are in: reassemble, verify every
#                                  sha256, find the machine's CUDA 13 libraries, run the
#                                  check (ARGs go to diplip-gpucheck, e.g. -skip-cuda) and
#                                  write its CSVs and log to $OUT
#
# Environment: GPU_BUNDLE (default .cache/gpu-bundle), GPU_CHECK_LIBS (pack: the directory
# of the ONNX Runtime libraries; default .cache/onnxruntime-gpu/1.31.1), GPU_CHUNK_BYTES
# (pack; default 56 MiB, leaving room for the working tree in a 64 MiB call), XZ_OPT (pack;
# xz's own, default -6), GPU_CHECK_WORK (run: where the bundle is unpacked; default
# /tmp/diplip-gpu-check), OUT (run: where results go; required).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${DIPLIP_CACHE:-$ROOT/.cache}
BUNDLE=${GPU_BUNDLE:-$ROOT/.cache/gpu-bundle}
NAME=bundle.tar.xz

say() { printf 'gpu-check: %s\n' "$*"; }
die() { printf 'gpu-check: error: %s\n' "$*" >&2; exit 1; }

cmd_pack() {
	local libs=${GPU_CHECK_LIBS:-$CACHE/onnxruntime-gpu/1.31.1} chunk=${GPU_CHUNK_BYTES:-58720256}
	[ -d "$libs" ] || die "$libs: no ONNX Runtime libraries; run: scripts/setup.sh gpu-libs"
	local ortlib
	ortlib=$(cd "$libs" && ls libonnxruntime.so.1.* 2>/dev/null | head -1 || true)
	[ -n "$ortlib" ] || ortlib=$(cd "$libs" && ls libonnxruntime.so.1 2>/dev/null || true)
	[ -n "$ortlib" ] || die "$libs: no libonnxruntime.so.1* in it"
	local fixed=$CACHE/models/yolox_nano.onnx dynamic=$CACHE/models/yolox_nano_dynamic.onnx
	[ -f "$fixed" ] || die "$fixed missing; run: scripts/setup.sh models"
	[ -f "$dynamic" ] || die "$dynamic missing; run: scripts/setup.sh models-dynamic"
	local stage
	stage=$(mktemp -d)
	local p=$stage/payload
	mkdir -p "$p/lib" "$p/bin" "$p/function" "$p/models" "$p/media"
	# -L: copy what links name (setup may link libraries into place).
	local f
	for f in "$libs"/libonnxruntime.so* "$libs"/libonnxruntime_providers_*.so; do
		if [ -e "$f" ]; then cp -L "$f" "$p/lib/"; fi
	done
	echo "$ortlib" >"$p/ORT_LIB"
	say "building cmd/diplip-gpucheck (CGO_ENABLED=1; it links only libc)"
	(cd "$ROOT" && CGO_ENABLED=1 go build -trimpath -o "$p/bin/diplip-gpucheck" ./cmd/diplip-gpucheck)
	local linked
	linked=$(ldd "$p/bin/diplip-gpucheck" | awk '{print $1}' | grep -v -e '^linux-vdso' -e '^libc\.so' -e 'ld-linux' || true)
	[ -z "$linked" ] || die "diplip-gpucheck links more than libc: $linked"
	cp "$ROOT/functions/examples/yolox-nano/function.yaml" "$ROOT/functions/examples/yolox-nano/coco80.txt" "$p/function/"
	cp -L "$fixed" "$p/function/yolox_nano.onnx"
	cp -L "$dynamic" "$p/models/yolox_nano_dynamic.onnx"
	for f in astronaut.png messi5.jpg chelsea.png vtest_frame600.jpg; do
		[ -f "$CACHE/media/$f" ] || die "$CACHE/media/$f missing; run: scripts/setup.sh media"
		cp "$CACHE/media/$f" "$p/media/"
	done
	(cd "$p" && find . -type f ! -name PAYLOAD.sha256 | sort | xargs sha256sum >PAYLOAD.sha256)
	say "compressing $(du -sh "$p" | cut -f1) with xz ${XZ_OPT:--6} (a few minutes for the CUDA provider)"
	mkdir -p "$BUNDLE"
	rm -f "$BUNDLE"/$NAME.part-* "$BUNDLE/MANIFEST.sha256"
	tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner -cf - payload | xz -T2 ${XZ_OPT:--6} >"$stage/$NAME"
	split -b "$chunk" -d -a 2 "$stage/$NAME" "$BUNDLE/$NAME.part-"
	(cd "$stage" && sha256sum "$NAME") >"$BUNDLE/MANIFEST.sha256"
	(cd "$BUNDLE" && sha256sum $NAME.part-*) >>"$BUNDLE/MANIFEST.sha256"
	local n size
	n=$(ls "$BUNDLE"/$NAME.part-* | wc -l)
	size=$(du -b "$stage/$NAME" | cut -f1)
	rm -rf "$stage"
	say "packed $size bytes into $n chunk(s) in $BUNDLE (MANIFEST.sha256); carry one per device call: docs/gpu-check.md"
}

# parts lists the chunk names MANIFEST.sha256 names, in order.
parts() { awk '{print $2}' "$BUNDLE/MANIFEST.sha256" | grep -F "$NAME.part-" | sort; }

cmd_receive() {
	[ -f "$BUNDLE/MANIFEST.sha256" ] || die "$BUNDLE/MANIFEST.sha256 missing: carry it with every chunk"
	local have=() missing=() bad=() part want
	for part in $(parts); do
		if [ ! -f "$BUNDLE/$part" ]; then
			missing+=("$part")
			continue
		fi
		want=$(awk -v p="$part" '$2 == p {print $1}' "$BUNDLE/MANIFEST.sha256")
		if [ "$(sha256sum "$BUNDLE/$part" | cut -d' ' -f1)" = "$want" ]; then
			have+=("$part")
		else
			bad+=("$part")
		fi
	done
	local total=$(( ${#have[@]} + ${#missing[@]} + ${#bad[@]} ))
	say "have ${#have[@]} of $total chunks (sha256 verified): ${have[*]:-none}"
	[ ${#bad[@]} -eq 0 ] || die "corrupt chunk(s), carry them again: ${bad[*]}"
	[ ${#missing[@]} -eq 0 ] && say "all chunks in: run scripts/gpu-check.sh run" || say "still missing: ${missing[*]}"
}

# cuda_lib_dirs prints the lib directories of the NVIDIA wheels (nvidia-cublas,
# nvidia-cuda-runtime, nvidia-cudnn-cu13, nvidia-curand, …) in this machine's Python
# installs, where PyTorch keeps CUDA 13.
cuda_lib_dirs() {
	local roots=() py
	for py in python3 /opt/torch/.venv/bin/python3; do
		command -v "$py" >/dev/null 2>&1 || continue
		while IFS= read -r d; do roots+=("$d"); done < <("$py" -c 'import site, sys; print("\n".join(site.getsitepackages() + [site.getusersitepackages()] + sys.path))' 2>/dev/null || true)
	done
	local d
	for d in "${roots[@]}"; do
		[ -d "$d/nvidia" ] || continue
		find "$d/nvidia" -maxdepth 3 -type d -name lib 2>/dev/null
	done | sort -u
}

cmd_run() {
	[ -n "${OUT:-}" ] || die "OUT is not set: the directory the results go to"
	mkdir -p "$OUT"
	cmd_receive
	local part
	for part in $(parts); do [ -f "$BUNDLE/$part" ] || die "$part has not arrived; carry it first (docs/gpu-check.md)"; done
	local work=${GPU_CHECK_WORK:-/tmp/diplip-gpu-check}
	rm -rf "$work"
	mkdir -p "$work"
	# shellcheck disable=SC2046
	cat $(parts | sed "s|^|$BUNDLE/|") >"$work/$NAME"
	local want
	want=$(awk -v p="$NAME" '$2 == p {print $1}' "$BUNDLE/MANIFEST.sha256")
	[ "$(sha256sum "$work/$NAME" | cut -d' ' -f1)" = "$want" ] || die "the reassembled $NAME does not match MANIFEST.sha256"
	xz -dc "$work/$NAME" | tar -C "$work" -xf -
	rm -f "$work/$NAME"
	(cd "$work/payload" && sha256sum --quiet -c PAYLOAD.sha256) || die "unpacked files do not match PAYLOAD.sha256"
	say "bundle reassembled and verified in $work/payload"
	local p=$work/payload dirs
	dirs=$(cuda_lib_dirs | paste -sd: -)
	export LD_LIBRARY_PATH=$p/lib${dirs:+:$dirs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	export DIPLIP_ORT_LIB=$p/lib/$(cat "$p/ORT_LIB")
	{
		echo "date: $(date -u +%FT%TZ)"
		echo "host: $(uname -srm)"
		echo "gpus: $(nvidia-smi -L 2>/dev/null | tr '\n' ';' || echo none)"
		echo "DIPLIP_ORT_LIB=$DIPLIP_ORT_LIB"
		echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
	} | tee "$OUT/env.txt"
	set +e
	"$p/bin/diplip-gpucheck" -function "$p/function" -dynamic-model "$p/models/yolox_nano_dynamic.onnx" \
		-media "$p/media" -out "$OUT" "$@" 2>&1 | tee "$OUT/check.log"
	local rc=${PIPESTATUS[0]}
	set -e
	say "diplip-gpucheck exited $rc; results in $OUT (compare.csv, throughput.csv, check.log, env.txt)"
	return "$rc"
}

case ${1:-} in
pack) shift; cmd_pack "$@" ;;
receive) shift; cmd_receive "$@" ;;
run) shift; cmd_run "$@" ;;
*) die "usage: scripts/gpu-check.sh pack | receive | run [diplip-gpucheck flags]" ;;
esac
