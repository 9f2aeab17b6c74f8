# Thin wrapper over Meson; see README.md.
BUILD ?= build
DEPS = meson ninja-build pkg-config gcc clang libjansson-dev \
       liburing-dev libseccomp-dev nettle-dev zlib1g-dev libcmocka-dev python3-pytest python3-pytest-timeout python3-jsonschema python3-yaml curl \
       qemu-system-x86 busybox-static linux-source-6.1 e2fsprogs cpio flex bison bc \
       libelf-dev libssl-dev kmod xz-utils acpica-tools iproute2 util-linux libc6-dev gnuplot-nox \
       dmsetup debootstrap

.PHONY: setup build test demo bench fuzz soak clean

setup:
	@missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

test: build
	tools/run-tests.sh

demo: build
	tools/demo.sh

bench: build
	bench/run

# Every libFuzzer target for FUZZ_SECONDS each (build-fuzz, clang); see docs/fuzzing.md.
FUZZ_SECONDS ?= 300
fuzz:
	tools/fuzz.sh -t $(FUZZ_SECONDS)

# VM lifecycles one after another and at once, and long-lived processes
# checked for fd, thread and memory growth (tools/soak.py,
# docs/reliability.md). Hours under the nested test host: lower the counts
# for a quick look (make soak SOAK_SEQUENTIAL=20 SOAK_PARALLEL=5).
SOAK_SEQUENTIAL ?= 1000
SOAK_PARALLEL ?= 50
SOAK_REQUESTS ?= 20000
SOAK_PATCHES ?= 2000
soak: build
	tools/soak.sh --sequential $(SOAK_SEQUENTIAL) --parallel $(SOAK_PARALLEL) \
		--requests $(SOAK_REQUESTS) --patches $(SOAK_PATCHES)

clean:
	rm -rf $(BUILD)
