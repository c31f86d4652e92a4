# libdcf under sanitizers and libFuzzer (libdcf/fuzz/README.md). Included by the root Makefile
# after libdcf/native.mk (whose DCF_SRCS, DCF_HDRS and DCF_ZSTD_PROBE it uses).
#
#   make native-asan   build/native-asan/dcf_fuzz_driver          gcc, ASan + UBSan: the driver of
#                                                                 tools/fuzz_libdcf.py and the tests
#                      build/native-asan/nozstd/dcf_fuzz_driver   the same without zstd (DCF_NO_ZSTD)
#                      build/native-asan/dcf_fuzz_driver_plain    no sanitizer, for valgrind
#   make fuzz-native   build/fuzz/fuzz_decode                     clang, libFuzzer + ASan + UBSan
FUZZ_CC ?= gcc
FUZZ_CLANG ?= clang
FUZZ_SRCS := $(DCF_SRCS) libdcf/fuzz/fuzz_decode.c
FUZZ_DEPS := $(FUZZ_SRCS) $(DCF_HDRS) libdcf/fuzz/fuzz.mk
FUZZ_CFLAGS := -std=c99 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Ilibdcf
FUZZ_SANITIZE := -fsanitize=address,undefined -fno-sanitize-recover=all
# -lzstd where zstd.h and libzstd are found, else a build without zstd
FUZZ_ZSTD = $$(if $(DCF_ZSTD_PROBE); then echo -lzstd; else echo -DDCF_NO_ZSTD; fi)

.PHONY: native-asan fuzz-native

native-asan: build/native-asan/dcf_fuzz_driver build/native-asan/nozstd/dcf_fuzz_driver \
             build/native-asan/dcf_fuzz_driver_plain

build/native-asan/dcf_fuzz_driver: $(FUZZ_DEPS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) -DDCF_FUZZ_DRIVER $(FUZZ_SRCS) $(FUZZ_ZSTD) -o $@

build/native-asan/nozstd/dcf_fuzz_driver: $(FUZZ_DEPS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SANITIZE) -DDCF_FUZZ_DRIVER -DDCF_NO_ZSTD $(FUZZ_SRCS) -o $@

build/native-asan/dcf_fuzz_driver_plain: $(FUZZ_DEPS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -DDCF_FUZZ_DRIVER $(FUZZ_SRCS) $(FUZZ_ZSTD) -o $@

fuzz-native: build/fuzz/fuzz_decode

build/fuzz/fuzz_decode: $(FUZZ_DEPS)
	@command -v $(FUZZ_CLANG) >/dev/null || { echo "fuzz-native needs clang (apt-get install -y clang)"; exit 1; }
	@mkdir -p $(@D)
	$(FUZZ_CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $(FUZZ_SRCS) \
	    $(FUZZ_ZSTD) -o $@
