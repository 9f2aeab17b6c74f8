# Thin wrapper over Meson; see README.md.
BUILD ?= build
DEPS = meson ninja-build pkg-config gcc clang libjansson-dev \
       liburing-dev libseccomp-dev libcmocka-dev python3-pytest python3-pytest-timeout python3-jsonschema python3-yaml curl \
       qemu-system-x86 busybox-static linux-source-6.1 e2fsprogs cpio flex bison bc \
       libelf-dev libssl-dev kmod xz-utils acpica-tools iproute2 util-linux libc6-dev gnuplot-nox

.PHONY: setup build test demo bench clean

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

clean:
	rm -rf $(BUILD)
