# libdcf, the C decoder: `make native` (from the repository root; the root Makefile includes this).
#
#   build/native/libdcf.a, libdcf.so, dcfdecode            with zstd when zstd.h and libzstd are
#                                                          found, else without (DCF_NO_ZSTD)
#   build/native/nozstd/libdcf.a, libdcf.so, dcfdecode     always without zstd
#
# On a machine without zstd.h, where apt-get exists and we are root, libzstd-dev is installed
# first (as the rest of the set-up installs system packages).
CC ?= cc
NATIVE_DIR := build/native
DCF_SRCS := $(addprefix libdcf/,errors.c crc32.c container.c streams.c bitpack.c huffman.c \
              byteplanes.c zstd_stream.c convert.c tensor.c)
DCF_HDRS := libdcf/dcf.h libdcf/dcf_internal.h libdcf/crc32_tables.h
DCF_CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Werror -pedantic
DCF_ZSTD_PROBE = printf '\043include <zstd.h>\nint main(void) { return ZSTD_versionNumber() == 0; }\n' \
    | $(CC) -x c - -o /dev/null -lzstd >/dev/null 2>&1

.PHONY: native native-build native-nozstd

native:
	@if ! $(DCF_ZSTD_PROBE); then \
	    if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	        echo "libdcf: zstd.h not found: installing libzstd-dev"; \
	        apt-get install -y -q libzstd-dev >/dev/null 2>&1 \
	            || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libzstd-dev >/dev/null 2>&1; } || true; \
	    fi; \
	fi; \
	if $(DCF_ZSTD_PROBE); then \
	    echo "libdcf: building with zstd -> $(NATIVE_DIR)"; \
	    $(MAKE) --no-print-directory -f libdcf/native.mk native-build DCF_ZSTD=1 DCF_OUT=$(NATIVE_DIR) || exit 1; \
	else \
	    echo "libdcf: zstd.h or libzstd not found: building WITHOUT zstd (DCF_NO_ZSTD): files with ZSTD streams will be refused"; \
	    $(MAKE) --no-print-directory -f libdcf/native.mk native-build DCF_ZSTD=0 DCF_OUT=$(NATIVE_DIR) || exit 1; \
	fi; \
	echo "libdcf: building without zstd -> $(NATIVE_DIR)/nozstd"; \
	$(MAKE) --no-print-directory -f libdcf/native.mk native-build DCF_ZSTD=0 DCF_OUT=$(NATIVE_DIR)/nozstd

native-nozstd:
	@$(MAKE) --no-print-directory -f libdcf/native.mk native-build DCF_ZSTD=0 DCF_OUT=$(NATIVE_DIR)/nozstd

ifdef DCF_OUT
ifeq ($(DCF_ZSTD),1)
DCF_DEFS :=
DCF_LIBS := -lzstd
else
DCF_DEFS := -DDCF_NO_ZSTD
DCF_LIBS :=
endif
DCF_OBJS := $(patsubst libdcf/%.c,$(DCF_OUT)/obj/%.o,$(DCF_SRCS))

native-build: $(DCF_OUT)/libdcf.a $(DCF_OUT)/libdcf.so $(DCF_OUT)/dcfdecode

# the configuration (zstd or not) as a file, rewritten only when it changes: objects follow it
$(DCF_OUT)/obj/config: FORCE
	@mkdir -p $(DCF_OUT)/obj
	@echo "$(CC) $(DCF_CFLAGS) $(DCF_DEFS)" | cmp -s - $@ || echo "$(CC) $(DCF_CFLAGS) $(DCF_DEFS)" > $@

$(DCF_OUT)/obj/%.o: libdcf/%.c $(DCF_HDRS) $(DCF_OUT)/obj/config
	$(CC) $(DCF_CFLAGS) -fPIC $(DCF_DEFS) -c $< -o $@

$(DCF_OUT)/libdcf.a: $(DCF_OBJS)
	rm -f $@
	ar rcs $@ $(DCF_OBJS)

$(DCF_OUT)/libdcf.so: $(DCF_OBJS)
	$(CC) -shared -o $@ $(DCF_OBJS) $(DCF_LIBS)

$(DCF_OUT)/dcfdecode: libdcf/tools/dcfdecode.c $(DCF_OUT)/libdcf.a libdcf/dcf.h $(DCF_OUT)/obj/config
	$(CC) $(DCF_CFLAGS) $(DCF_DEFS) -Ilibdcf libdcf/tools/dcfdecode.c $(DCF_OUT)/libdcf.a $(DCF_LIBS) -o $@

.PHONY: FORCE
FORCE:
endif
