#!/usr/bin/env bash
# setup.sh — installs and verifies everything diplip needs on a Debian 12 machine.
#
# Idempotent: every step checks what is already there (by sha256 where the source
# publishes something stable) and prints "cached" instead of doing the work again.
# Everything downloaded lives under one git-ignored directory, $DIPLIP_CACHE
# (default: .cache/ in the repository root).
#
# Usage: scripts/setup.sh [step ...]      steps: apt ort kafka models media ui (default: all)
#                                         and, only when named: models-dynamic gpu-libs
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${DIPLIP_CACHE:-$ROOT/.cache}
SHARED=${DIPLIP_SHARED:-$ROOT/../shared}

# Pins. Change a version and its sha256 together.
# ONNX Runtime comes from PyPI's CPU wheel (one fixed file, whatever the local python),
# of which only capi/libonnxruntime.so.$ORT_VERSION is kept; must match internal/assets.ORTVersion.
ORT_VERSION=1.32.0
ORT_WHEEL=onnxruntime-$ORT_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_WHEEL_SHA256=5a34fc4dfeb5a7b4a74c95dcba1e773d722abda720b474edf1b0c419dc6d163d
ORT_LIB_SHA256=6c1585d1bbf45b0712ea4a21b705c5fcb4ba04ff2e30f1fbf81a49faf658638f # onnxruntime/capi/libonnxruntime.so.1.32.0
KAFKA_VERSION=4.1.2 # must match scripts/kafka/pom.xml
YOLOX_SHA256=695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14
YOLOX_URL=https://github.com/Megvii-BaseDetection/YOLOX/releases/download/0.1.1rc0/yolox_nano.onnx
# The second detector family and the re-identification embedder (SOURCE.md §2, §3 of the
# shared models), copied from $SHARED/models only (no public download of these files).
NANODET_SHA256=88e9fb97a54bb0030127ad323a10f88b4531b6aa82617e7ef79e35ffcc9bb3e1
REID_SHA256=f3966d905e7232026aa8b814c328231a7b45c5b6b4dd32f886894223c4441b80
VTEST_SHA256=45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf
# The dynamic-batch YOLOX-Nano that `diplip-gpucheck make-dynamic` makes from the pinned
# yolox_nano.onnx (functions/onnx.MakeBatchDynamic; deterministic).
YOLOX_DYNAMIC_SHA256=749f13d04d069eee6fe5ce9c08d5dfa21260292da2f30ece1906fddf7e81a6c6
# ONNX Runtime with the CUDA provider (CUDA 13, cuDNN 9), for the GPU check only (step
# gpu-libs, not a default step): PyPI's onnxruntime-gpu wheel, of which the three
# libraries below are kept.
ORT_GPU_VERSION=1.31.1
ORT_GPU_WHEEL=onnxruntime_gpu-$ORT_GPU_VERSION-cp311-cp311-manylinux_2_28_x86_64.whl
ORT_GPU_WHEEL_SHA256=e26c475fe361b2015f45b4b824bd13f0bb20204e59b62814e6f0acd5f3d491a6
ORT_GPU_LIBS=(
	"libonnxruntime.so.$ORT_GPU_VERSION 5104254339ecadae808da771bd0b63b240f0dbd466514234905e54372435c303"
	"libonnxruntime_providers_shared.so 086ec1d5388f64153d9c63470d126693db9a182c8ce236d3a1119068471b8a0d"
	"libonnxruntime_providers_cuda.so d5290158115fa5569a3fe8f1f4037ee9b0e86658a96e52f852bbb7039aa88137"
)
# Debian packages the build and the tests need. skopeo: a third-party OCI client the
# registry tests check compatibility with. GStreamer's RTSP server (python3-gi and the
# gstreamer packages): the real RTSP camera of the camera tests
# (internal/testkit/testdata/rtsp_server.py). chromium: the dashboard's browser test. mosquitto: the
# MQTT broker the sinks' tests start (/usr/sbin/mosquitto). gocv v0.31.0 is the newest gocv that builds
# against Debian 12's OpenCV 4.6.0 (pinned in go.mod).
APT_PACKAGES=(libopencv-dev pkg-config ffmpeg python3-pip skopeo python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good
	gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav chromium openjdk-17-jre-headless maven mosquitto)

say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }
sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }
need_sha() { sha_ok "$1" "$2" || die "$1: sha256 is $(sha256sum "$1" | cut -d' ' -f1), want $2"; }

step_apt() {
	local missing=()
	for p in "${APT_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
	done
	# Java and Maven may come from elsewhere (a JDK on PATH); then Debian's are not needed.
	if command -v java >/dev/null && command -v mvn >/dev/null; then
		local keep=()
		for p in "${missing[@]}"; do case $p in openjdk-*|maven) ;; *) keep+=("$p");; esac; done
		missing=("${keep[@]}")
	fi
	if [ ${#missing[@]} -eq 0 ]; then
		say "debian packages: ${APT_PACKAGES[*]}: cached"
		return
	fi
	say "debian packages: installing ${missing[*]} (apt-get)"
	local sudo=""
	[ "$(id -u)" = 0 ] || sudo="sudo"
	local log
	log=$(mktemp)
	{ $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$log" 2>&1 ||
		{ tail -20 "$log" >&2; die "apt-get could not install ${missing[*]}"; }
	rm -f "$log"
	say "debian packages: installed ${missing[*]}"
}

step_ort() {
	local dir=$CACHE/onnxruntime/$ORT_VERSION lib
	lib=$dir/libonnxruntime.so.1
	if sha_ok "$lib" "$ORT_LIB_SHA256"; then
		say "onnxruntime $ORT_VERSION: cached at $lib"
		return
	fi
	say "onnxruntime $ORT_VERSION: fetching the PyPI wheel $ORT_WHEEL (about 28 MB)"
	command -v python3 >/dev/null || die "python3 not found; run: scripts/setup.sh apt"
	local dl=$CACHE/downloads
	mkdir -p "$dl" "$dir"
	local whl=$dl/$ORT_WHEEL
	if ! sha_ok "$whl" "$ORT_WHEEL_SHA256"; then
		local py=python3
		if ! $py -m pip --version >/dev/null 2>&1; then
			py=/usr/bin/python3 # Debian's, with python3-pip from the apt step
			$py -m pip --version >/dev/null 2>&1 || die "python3 has no pip; install it (Debian: apt-get install python3-pip)"
		fi
		rm -f "$whl" # pip would keep a damaged file of the same name
		# The platform, python and ABI are named so that pip fetches the pinned file on any
		# machine; --no-deps: only the shared library is used, not the python package.
		local log
		log=$(mktemp)
		$py -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
			--platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
			-d "$dl" "onnxruntime==$ORT_VERSION" >"$log" 2>&1 ||
			{ tail -20 "$log" >&2; die "pip could not download onnxruntime==$ORT_VERSION ($ORT_WHEEL)"; }
		rm -f "$log"
		[ -f "$whl" ] || die "pip did not fetch $ORT_WHEEL (got: $(cd "$dl" && ls onnxruntime-*.whl 2>/dev/null | tr '\n' ' '))"
	fi
	need_sha "$whl" "$ORT_WHEEL_SHA256"
	local tmp member=onnxruntime/capi/libonnxruntime.so.$ORT_VERSION
	tmp=$(mktemp -d)
	python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extract(sys.argv[2], sys.argv[3])' "$whl" "$member" "$tmp" ||
		die "$whl: cannot extract $member"
	need_sha "$tmp/$member" "$ORT_LIB_SHA256"
	mv "$tmp/$member" "$lib"
	rm -rf "$tmp" "$whl"
	ln -sf libonnxruntime.so.1 "$dir/libonnxruntime.so"
	say "onnxruntime $ORT_VERSION: installed $lib (sha256 verified)"
}

step_kafka() {
	local dir=$CACHE/kafka/$KAFKA_VERSION pom=$ROOT/scripts/kafka/pom.xml stamp
	stamp=$(sha256sum "$pom" | cut -d' ' -f1)
	if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$stamp" ]; then
		say "kafka $KAFKA_VERSION: cached at $dir/lib ($(ls "$dir/lib" | wc -l) jars)"
		return
	fi
	command -v mvn >/dev/null || die "mvn not found; run: scripts/setup.sh apt"
	say "kafka $KAFKA_VERSION: resolving the broker classpath from Maven Central (checksums enforced)"
	rm -rf "$dir"
	mkdir -p "$dir"
	# --strict-checksums fails the build on a jar whose published checksum does not match.
	mvn -q -B --strict-checksums -f "$pom" dependency:copy-dependencies \
		-DincludeScope=runtime -DoutputDirectory="$dir/lib" >"$dir/maven.log" 2>&1 ||
		{ tail -20 "$dir/maven.log" >&2; die "maven could not resolve the Kafka classpath (log: $dir/maven.log)"; }
	[ -f "$dir/lib/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka_2.13-$KAFKA_VERSION.jar missing after maven; does scripts/kafka/pom.xml pin $KAFKA_VERSION?"
	echo "$stamp" >"$dir/.complete"
	say "kafka $KAFKA_VERSION: installed $(ls "$dir/lib" | wc -l) jars in $dir/lib"
}

step_models() {
	local dir=$CACHE/models
	mkdir -p "$dir"
	if sha_ok "$dir/yolox_nano.onnx" "$YOLOX_SHA256" || [ -f "$SHARED/models/yolox_nano.onnx" ]; then
		shared_model yolox_nano.onnx "$YOLOX_SHA256"
	elif [ ! -f "$dir/yolox_nano.onnx" ]; then
		# The official release asset is the same network and export recipe, but not a
		# byte-identical file, so it cannot be held to the sha256 above.
		say "model yolox_nano.onnx: downloading the official YOLOX 0.1.1rc0 release asset"
		curl -fsSL --retry 3 -o "$dir/yolox_nano.onnx.part" "$YOLOX_URL" ||
			die "could not download $YOLOX_URL; put yolox_nano.onnx in $SHARED/models or $dir"
		mv "$dir/yolox_nano.onnx.part" "$dir/yolox_nano.onnx"
		say "model yolox_nano.onnx: sha256 $(sha256sum "$dir/yolox_nano.onnx" | cut -d' ' -f1) (release asset; not the pinned file)"
	else
		say "model yolox_nano.onnx: cached (not the pinned file: sha256 differs)"
	fi
	shared_model nanodet_m_320.onnx "$NANODET_SHA256"
	shared_model person-reidentification-retail-0288.onnx "$REID_SHA256"
	link_example_models
}

# shared_model NAME SHA256 copies a model from $SHARED/models into the cache, sha256
# verified; without the shared copy its example is left without a model (said so).
shared_model() {
	local dir=$CACHE/models name=$1 sum=$2
	if sha_ok "$dir/$name" "$sum"; then
		say "model $name: cached"
	elif [ -f "$SHARED/models/$name" ]; then
		need_sha "$SHARED/models/$name" "$sum"
		cp "$SHARED/models/$name" "$dir/$name"
		say "model $name: copied from $SHARED/models (sha256 verified)"
	else
		say "model $name: not in $SHARED/models; its example function has no model"
	fi
}

# link_example_models puts the models into the example function directories, where
# `diplip fn build functions/examples/NAME` expects them.
link_example_models() {
	ln -sfn "$CACHE/models/yolox_nano.onnx" "$ROOT/functions/examples/yolox-nano/yolox_nano.onnx"
	ln -sfn "$CACHE/models/nanodet_m_320.onnx" "$ROOT/functions/examples/nanodet-m/nanodet_m_320.onnx"
	ln -sfn "$CACHE/models/person-reidentification-retail-0288.onnx" \
		"$ROOT/functions/examples/person-reid/person-reidentification-retail-0288.onnx"
}

step_media() {
	local dir=$CACHE/media
	mkdir -p "$dir"
	if [ -d "$SHARED/media" ]; then
		local f
		for f in "$SHARED"/media/*.{png,jpg,avi,mp4,mjpeg}; do
			[ -f "$f" ] || continue
			cmp -s "$f" "$dir/$(basename "$f")" || cp "$f" "$dir/"
		done
		need_sha "$dir/vtest.avi" "$VTEST_SHA256"
		say "media: $(ls "$dir" | wc -l) files from $SHARED/media (vtest.avi sha256 verified)"
		return
	fi
	if ! sha_ok "$dir/vtest.avi" "$VTEST_SHA256"; then
		say "media: extracting the sample video and photos from Debian's opencv-doc and python3-skimage"
		local tmp
		tmp=$(mktemp -d)
		(cd "$tmp" && apt-get download -qq opencv-doc python3-skimage >/dev/null &&
			for d in ./*.deb; do dpkg-deb -x "$d" x; done)
		local name src
		for name in vtest.avi messi5.jpg astronaut.png chelsea.png; do
			src=$(find "$tmp/x" -name "$name" -o -name "$name.gz" | head -1)
			[ -n "$src" ] || die "$name not found in opencv-doc or python3-skimage"
			case $src in *.gz) gunzip -c "$src" >"$dir/$name" ;; *) cp "$src" "$dir/$name" ;; esac
		done
		rm -rf "$tmp"
		need_sha "$dir/vtest.avi" "$VTEST_SHA256"
	fi
	# The derived files, made with the commands recorded in shared/media/SOURCE.md.
	[ -f "$dir/vtest_h264.mp4" ] || ffmpeg -loglevel error -y -i "$dir/vtest.avi" -c:v libx264 -preset slow -crf 26 \
		-pix_fmt yuv420p -profile:v main -movflags +faststart -an "$dir/vtest_h264.mp4"
	[ -f "$dir/vtest_10s.mjpeg" ] || ffmpeg -loglevel error -y -i "$dir/vtest.avi" -t 10 -c:v mjpeg -q:v 5 -an -f mjpeg "$dir/vtest_10s.mjpeg"
	[ -f "$dir/vtest_frame600.jpg" ] || ffmpeg -loglevel error -y -i "$dir/vtest.avi" -vf "select=eq(n\,600)" -vsync 0 -frames:v 1 -q:v 2 "$dir/vtest_frame600.jpg"
	say "media: vtest.avi and derived files ready in $dir"
}

# step_ui installs playwright-core (pinned in internal/uitest/package-lock.json) to drive
# Debian's Chromium in the dashboard test; no browser is downloaded.
step_ui() {
	local dir=$ROOT/internal/uitest stamp
	stamp=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
	if [ -f "$dir/node_modules/.diplip-stamp" ] && [ "$(cat "$dir/node_modules/.diplip-stamp")" = "$stamp" ]; then
		say "ui test driver (playwright-core): cached"
		return
	fi
	command -v npm >/dev/null || die "npm not found; install Node.js 20 (Debian: apt-get install nodejs npm)"
	say "ui test driver: npm ci (playwright-core, integrity-checked by the lockfile)"
	(cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent) || die "npm ci in $dir failed"
	echo "$stamp" >"$dir/node_modules/.diplip-stamp"
	say "ui test driver: installed"
}

# step_models_dynamic makes the dynamic-batch export of yolox_nano.onnx (same weights; the
# batch axis symbolic, the output Reshapes' leading 1 made 0) for batch sizes above 1.
step_models_dynamic() {
	local fixed=$CACHE/models/yolox_nano.onnx out=$CACHE/models/yolox_nano_dynamic.onnx
	[ -f "$fixed" ] || step_models
	if sha_ok "$out" "$YOLOX_DYNAMIC_SHA256"; then
		say "model yolox_nano_dynamic.onnx: cached"
		return
	fi
	(cd "$ROOT" && go run ./cmd/diplip-gpucheck make-dynamic "$fixed" "$out") >/dev/null ||
		die "could not make $out from $fixed"
	if sha_ok "$fixed" "$YOLOX_SHA256"; then
		need_sha "$out" "$YOLOX_DYNAMIC_SHA256"
		say "model yolox_nano_dynamic.onnx: made from yolox_nano.onnx (sha256 verified)"
	else
		say "model yolox_nano_dynamic.onnx: made from an unpinned yolox_nano.onnx (sha256 not checked)"
	fi
}

# step_gpu_libs fetches ONNX Runtime's GPU build (about 256 MB), keeps its three
# libraries (sha256 verified) and packs the GPU check's chunks (scripts/gpu-check.sh pack;
# docs/gpu-check.md). Not a default step: only the GPU check uses it.
step_gpu_libs() {
	local dir=$CACHE/onnxruntime-gpu/$ORT_GPU_VERSION dl=$CACHE/downloads entry name sum ok=1
	for entry in "${ORT_GPU_LIBS[@]}"; do
		read -r name sum <<<"$entry"
		sha_ok "$dir/$name" "$sum" || ok=0
	done
	if [ $ok = 1 ]; then
		say "onnxruntime-gpu $ORT_GPU_VERSION: cached in $dir"
	else
		mkdir -p "$dl" "$dir"
		local whl=$dl/$ORT_GPU_WHEEL
		if ! sha_ok "$whl" "$ORT_GPU_WHEEL_SHA256"; then
			say "onnxruntime-gpu $ORT_GPU_VERSION: fetching the PyPI wheel $ORT_GPU_WHEEL (about 256 MB)"
			rm -f "$whl"
			local log
			log=$(mktemp)
			python3 -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
				--platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp --abi cp311 \
				-d "$dl" "onnxruntime-gpu==$ORT_GPU_VERSION" >"$log" 2>&1 ||
				{ tail -20 "$log" >&2; die "pip could not download onnxruntime-gpu==$ORT_GPU_VERSION"; }
			rm -f "$log"
			[ -f "$whl" ] || die "pip did not fetch $ORT_GPU_WHEEL"
		fi
		need_sha "$whl" "$ORT_GPU_WHEEL_SHA256"
		for entry in "${ORT_GPU_LIBS[@]}"; do
			read -r name sum <<<"$entry"
			python3 -c 'import sys, zipfile; open(sys.argv[3], "wb").write(zipfile.ZipFile(sys.argv[1]).read(sys.argv[2]))' \
				"$whl" "onnxruntime/capi/$name" "$dir/$name.part" || die "$whl: cannot extract onnxruntime/capi/$name"
			need_sha "$dir/$name.part" "$sum"
			mv "$dir/$name.part" "$dir/$name"
		done
		rm -f "$whl"
		say "onnxruntime-gpu $ORT_GPU_VERSION: installed ${#ORT_GPU_LIBS[@]} libraries in $dir (sha256 verified)"
	fi
	step_models_dynamic
	step_media
	GPU_CHECK_LIBS=$dir bash "$ROOT/scripts/gpu-check.sh" pack
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(apt ort kafka models media ui)
for s in "${steps[@]}"; do
	case $s in
	apt | ort | kafka | models | media | ui) "step_$s" ;;
	models-dynamic) step_models_dynamic ;;
	gpu-libs) step_gpu_libs ;;
	*) die "unknown step \"$s\" (steps: apt ort kafka models media ui models-dynamic gpu-libs)" ;;
	esac
done
