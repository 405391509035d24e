# portalbd build. `make` builds the binaries, `make test` runs every test,
# `make run` starts the daemon on its embedded default. See README.md.
#
# Layout: every folder is a library; files ending in _main.cc are program entry
# points, files ending in _test.cc are doctest unit tests linked into
# build/bin/unit_tests (csi/'s into build/bin/csi_unit_tests). Objects are built in parallel and incrementally (-MMD).

CXX      ?= g++
BUILD    ?= build
# One spelling of every output path, however BUILD was given (tests pass an
# absolute one): the -MMD dependency files name their target by that path, and
# a relative target never matches an absolute one, so header changes would
# silently stop rebuilding objects.
override BUILD := $(abspath $(BUILD))
NPROC    := $(shell nproc 2>/dev/null || echo 2)
PKGS     := sqlite3 liblz4 libzstd libisal spdlog fmt tomlplusplus nlohmann_json libnbd libcurl openssl fuse3
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN     := -Wall -Wextra -Werror -Wno-missing-field-initializers
# -g1: function names and line tables (backtraces, perf) at a quarter less
# compile time than -g; `make CXXFLAGS='-O2 -g'` for full debug info.
CXXFLAGS ?= -O2 -g1
ALL_CXXFLAGS := -std=c++20 $(WARN) -pthread -I. $(PKG_CFLAGS) $(CXXFLAGS)
LDLIBS   := $(PKG_LIBS) -pthread

# Library sources: everything that is neither an entry point nor a test.
LIB_DIRS := src/util src/format src/store src/store/s3 src/engine src/config src/log meta nbd ctl fuse daemon
ALL_SRCS := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.cc))
LIB_SRCS := $(filter-out %_main.cc %_test.cc,$(ALL_SRCS))
TEST_SRCS := $(filter %_test.cc,$(ALL_SRCS)) $(wildcard tests/unit/*.cc)

LIB_OBJS  := $(LIB_SRCS:%.cc=$(BUILD)/obj/%.o)
TEST_OBJS := $(TEST_SRCS:%.cc=$(BUILD)/obj/%.o)

BINS := $(BUILD)/bin/portalbd $(BUILD)/bin/portalctl $(BUILD)/bin/portalbd-csi
# Benchmark tools (bench/*.cc): built by `make` too, since test_trace.sh uses nbd_replay.
BENCH_BINS := $(BUILD)/bin/nbd_replay

# Sanitizer build of the unit tests (ASan + UBSan), objects kept apart.
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
SAN_LIB_OBJS  := $(LIB_SRCS:%.cc=$(BUILD)/asan/%.o)
SAN_TEST_OBJS := $(TEST_SRCS:%.cc=$(BUILD)/asan/%.o)

.PHONY: all deps run test unit asan-unit integration clean format format-check bench bench-traces bench-s3
all: $(BINS) $(BUILD)/bin/unit_tests $(BUILD)/bin/csi_unit_tests $(BENCH_BINS)

deps:
	@bash packaging/deps.sh

$(BUILD)/obj/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/asan/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -O0 -g1 $(SAN_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/lib/libportalbd.a: $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/portalbd: $(BUILD)/obj/daemon/portalbd_main.o $(BUILD)/lib/libportalbd.a
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/portalctl: $(BUILD)/obj/ctl/portalctl_main.o $(BUILD)/lib/libportalbd.a
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -o $@ $^ $(LDLIBS)

# ---- portalbd-csi, the Kubernetes CSI driver (csi/, issue 22). gRPC and
# protobuf stay in this one program: csi/ is its own library, outside
# LIB_DIRS, so neither libportalbd.a, the unit tests nor the lock analysis
# see them. The C++ code for the vendored csi/proto/csi.proto is generated
# at build time into $(BUILD)/gen/csi/ (never committed).
CSI_GEN    := $(BUILD)/gen/csi
CSI_PB     := $(CSI_GEN)/csi.pb.cc $(CSI_GEN)/csi.grpc.pb.cc
CSI_PB_OBJS := $(CSI_PB:.cc=.o)
CSI_SRCS   := $(filter-out %_main.cc %_test.cc,$(wildcard csi/*.cc))
CSI_OBJS   := $(CSI_SRCS:%.cc=$(BUILD)/obj/%.o)
CSI_MAIN_OBJ := $(BUILD)/obj/csi/portalbd_csi_main.o
CSI_CFLAGS := -I$(CSI_GEN) $(shell pkg-config --cflags grpc++ protobuf 2>/dev/null)
CSI_LIBS   := $(shell pkg-config --libs grpc++ protobuf 2>/dev/null)

$(CSI_GEN)/csi.pb.h $(CSI_GEN)/csi.pb.cc $(CSI_GEN)/csi.grpc.pb.h $(CSI_GEN)/csi.grpc.pb.cc &: csi/proto/csi.proto
	@mkdir -p $(CSI_GEN)
	protoc -Icsi/proto --cpp_out=$(CSI_GEN) --grpc_out=$(CSI_GEN) \
	  --plugin=protoc-gen-grpc=$$(command -v grpc_cpp_plugin) csi/proto/csi.proto

# Generated code is not ours to keep warning-free: built without -Werror.
$(CSI_GEN)/%.o: $(CSI_GEN)/%.cc
	$(CXX) -std=c++20 -pthread $(CSI_CFLAGS) $(CXXFLAGS) -MMD -MP -c $< -o $@

$(CSI_OBJS) $(CSI_MAIN_OBJ): ALL_CXXFLAGS += $(CSI_CFLAGS)
$(CSI_OBJS) $(CSI_MAIN_OBJ): | $(CSI_GEN)/csi.pb.h $(CSI_GEN)/csi.grpc.pb.h

$(BUILD)/lib/libportalbd_csi.a: $(CSI_OBJS) $(CSI_PB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/bin/portalbd-csi: $(CSI_MAIN_OBJ) $(BUILD)/lib/libportalbd_csi.a $(BUILD)/lib/libportalbd.a
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -o $@ $^ $(CSI_LIBS) $(LDLIBS)

-include $(CSI_OBJS:.o=.d) $(CSI_PB_OBJS:.o=.d) $(CSI_MAIN_OBJ:.o=.d)

# The CSI driver's unit tests (csi/*_test.cc): a binary of their own, since
# they need gRPC and protobuf, which unit_tests stays free of. They call the
# services' methods directly, on file:// storage in a temporary directory.
# `make test` builds and runs them beside unit_tests.
CSI_TEST_OBJS := $(patsubst %.cc,$(BUILD)/obj/%.o,$(wildcard csi/*_test.cc))
$(CSI_TEST_OBJS): ALL_CXXFLAGS += $(CSI_CFLAGS)
$(CSI_TEST_OBJS): | $(CSI_GEN)/csi.pb.h $(CSI_GEN)/csi.grpc.pb.h

$(BUILD)/bin/csi_unit_tests: $(CSI_TEST_OBJS) $(BUILD)/obj/tests/unit/doctest_main.o \
                             $(BUILD)/lib/libportalbd_csi.a $(BUILD)/lib/libportalbd.a
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -o $@ $^ $(CSI_LIBS) $(LDLIBS)

-include $(CSI_TEST_OBJS:.o=.d)

$(BUILD)/bin/nbd_replay: $(BUILD)/obj/bench/nbd_replay.o $(BUILD)/lib/libportalbd.a
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/unit_tests: $(TEST_OBJS) $(BUILD)/lib/libportalbd.a
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bin/unit_tests_asan: $(SAN_TEST_OBJS) $(SAN_LIB_OBJS)
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) $(SAN_FLAGS) -o $@ $^ $(LDLIBS)

# The daemon on its embedded default: persistent file store under the state dir.
run: deps
	@$(MAKE) --no-print-directory -j$(NPROC) all
	$(BUILD)/bin/portalbd $(RUN_ARGS)

# Every test: clang's lock analysis (thread-safety, below; a failure here does
# not stop the run, tests/integration/test_thread_safety.sh counts it), then
# integration with real clients, then unit (plain and ASan/UBSan).
# Ends with one line "N passed, N failed". The integration tests need only
# the programs; the unit test binaries (half the compile time) are built at
# nice 19 while they run, on the CPU they leave idle.
test: deps
	@$(MAKE) --no-print-directory -j$(NPROC) $(BINS) $(BENCH_BINS)
	-@$(MAKE) --no-print-directory -j$(NPROC) thread-safety
	@UNIT_BUILD='$(MAKE) --no-print-directory -j$(NPROC) $(BUILD)/bin/unit_tests $(BUILD)/bin/unit_tests_asan $(BUILD)/bin/csi_unit_tests' \
	  bash tests/run_all.sh

unit: $(BUILD)/bin/unit_tests $(BUILD)/bin/csi_unit_tests
	$(BUILD)/bin/unit_tests
	$(BUILD)/bin/csi_unit_tests

clean:
	rm -rf $(BUILD)

# .clang-format holds the style; every tracked C++ file follows it.
FORMAT_FILES = $(shell git ls-files '*.cc' '*.h')
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run -Werror $(FORMAT_FILES) 2>&1 | grep -o '^[^:]*:' | sort -u | sed 's/:$$/: not formatted (make format)/'; \
	  clang-format --dry-run -Werror $(FORMAT_FILES) >/dev/null 2>&1

-include $(LIB_OBJS:.o=.d) $(TEST_OBJS:.o=.d) $(SAN_LIB_OBJS:.o=.d) $(SAN_TEST_OBJS:.o=.d)
-include $(BUILD)/obj/daemon/portalbd_main.d $(BUILD)/obj/ctl/portalctl_main.d $(BUILD)/obj/bench/nbd_replay.d

# ---- packaging and the VM test (see packaging/README.md, tests/vm/)
PREFIX  ?= /usr/local
DESTDIR ?=

.PHONY: vm-test install deb
# The real kernel NBD client in a qemu guest (also part of `make test`).
vm-test: deps
	@$(MAKE) --no-print-directory $(BINS)
	@BUILD=$(BUILD) bash tests/integration/test_vm_kernel.sh

install: $(BINS)
	@BUILD=$(BUILD) PREFIX=$(PREFIX) DESTDIR=$(DESTDIR) bash packaging/install.sh

# build/deb/portalbd_VERSION_ARCH.deb, with dpkg-deb.
deb: $(BINS)
	@BUILD=$(BUILD) bash packaging/deb/build-deb.sh

# ---- durability tests (issue 7): the long crash loop, fuzzing, TSan
.PHONY: crash-test
# The seeded kill -9 loop for as long as asked: ITERATIONS on file://,
# S3_ITERATIONS on s3:// (s3rver, installed by `make deps`) and
# JOURNAL_ITERATIONS on file:// and S3_JOURNAL_ITERATIONS on s3:// with the
# journal; SEED=N replays a run. Then
# the crash matrix of root changes with more kill points.
ITERATIONS ?= 500
S3_ITERATIONS ?= 200
JOURNAL_ITERATIONS ?= 200
S3_JOURNAL_ITERATIONS ?= 100
crash-test: deps $(BINS)
	@BUILD=$(BUILD) ITERATIONS=$(ITERATIONS) S3_ITERATIONS=$(S3_ITERATIONS) JOURNAL_ITERATIONS=$(JOURNAL_ITERATIONS) \
	  S3_JOURNAL_ITERATIONS=$(S3_JOURNAL_ITERATIONS) \
	  bash tests/integration/test_crash_loop.sh
	@BUILD=$(BUILD) DELAYS_MS="2 5 10 15 20 30 40 50 80" bash tests/integration/test_crash_snapshot_ops.sh

# ---- fuzzing (tests/fuzz/): libFuzzer targets built with clang into build/fuzz/
.PHONY: fuzz fuzz-build
FUZZ_CXX     ?= clang++
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_LIB_SRCS := $(filter-out %_test.cc %_main.cc,$(wildcard nbd/*.cc src/util/*.cc src/log/*.cc)) \
                 src/format/segment.cc src/format/codec.cc src/format/checkpoint_codec.cc src/engine/block_device.cc \
                 src/engine/journal.cc src/engine/journal_format.cc src/engine/journal_recovery.cc src/store/s3/xml.cc
FUZZ_LIB_OBJS := $(FUZZ_LIB_SRCS:%.cc=$(BUILD)/fuzz/obj/%.o)
FUZZ_TARGETS  := $(patsubst tests/fuzz/%_fuzz.cc,$(BUILD)/fuzz/%_fuzz,$(wildcard tests/fuzz/*_fuzz.cc))

$(BUILD)/fuzz/obj/%.o: %.cc
	@mkdir -p $(dir $@)
	$(FUZZ_CXX) -std=c++20 -Wall -Wextra -Werror -Wno-missing-field-initializers -pthread -I. $(PKG_CFLAGS) \
	  -O1 -g $(FUZZ_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/fuzz/%_fuzz: $(BUILD)/fuzz/obj/tests/fuzz/%_fuzz.o $(FUZZ_LIB_OBJS)
	$(FUZZ_CXX) -fsanitize=fuzzer,address,undefined -pthread -o $@ $^ $(LDLIBS)

fuzz-build: $(FUZZ_TARGETS)

# Runs every target for FUZZ_SECONDS on its seed corpus (tests/fuzz/corpus/<name>/,
# read only; new inputs go to build/fuzz/corpus/<name>/).
fuzz: fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) BUILD=$(BUILD) bash tests/fuzz/run.sh

-include $(FUZZ_LIB_OBJS:.o=.d) $(patsubst %,$(BUILD)/fuzz/obj/tests/fuzz/%.d,$(notdir $(FUZZ_TARGETS)))
.SECONDARY: $(FUZZ_LIB_OBJS) $(patsubst %,$(BUILD)/fuzz/obj/tests/fuzz/%.o,$(notdir $(FUZZ_TARGETS)))

# ---- benchmarks (bench/, never part of `make test`): fio side by side with
# nbdkit and qemu-nbd, snapshot create/restore latency, FUSE read throughput,
# rebuild time from storage, and replays of recorded request traces against
# the same servers.
bench: $(BINS) $(BENCH_BINS)
	@BUILD=$(BUILD) bash bench/fio_compare.sh
	@BUILD=$(BUILD) bash bench/snapshot_latency.sh
	@BUILD=$(BUILD) bash bench/fuse_read.sh
	@BUILD=$(BUILD) bash bench/trace_compare.sh
	@BUILD=$(BUILD) bash bench/rebuild_time.sh

# Only the trace replay comparison (bench/traces/, recorded by bench/record_traces.sh).
.PHONY: bench-traces bench-rebuild
bench-traces: $(BINS) $(BENCH_BINS)
	@BUILD=$(BUILD) bash bench/trace_compare.sh

# Rebuild from storage with and without a fresh index checkpoint (GIB=4, STORE=file|s3).
bench-rebuild: $(BINS)
	@BUILD=$(BUILD) bash bench/rebuild_time.sh

# portalbd s3:// against s3backer on one s3rver (needs `make deps` for s3rver;
# installs s3backer and fio when missing; mounts FUSE, so run as root).
bench-s3: $(BINS)
	@BUILD=$(BUILD) bash bench/s3_compare.sh

# ---- TSan: every unit test (the same sources as unit_tests) under ThreadSanitizer, objects in build/tsan/
.PHONY: tsan-unit
TSAN_FLAGS := -fsanitize=thread -fno-omit-frame-pointer
TSAN_LIB_SRCS  := $(LIB_SRCS)
TSAN_TEST_SRCS := $(TEST_SRCS)
TSAN_OBJS := $(TSAN_LIB_SRCS:%.cc=$(BUILD)/tsan/%.o) $(TSAN_TEST_SRCS:%.cc=$(BUILD)/tsan/%.o)

$(BUILD)/tsan/%.o: %.cc
	@mkdir -p $(dir $@)
	$(CXX) $(ALL_CXXFLAGS) -O1 $(TSAN_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/tsan/unit_tests_tsan: $(TSAN_OBJS)
	$(CXX) $(ALL_CXXFLAGS) $(TSAN_FLAGS) -o $@ $^ $(LDLIBS)

tsan-unit: $(BUILD)/tsan/unit_tests_tsan
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" $(BUILD)/tsan/unit_tests_tsan

-include $(TSAN_OBJS:.o=.d)

# ---- thread-safety: clang's lock analysis over every library and program
# source and the header-only test helpers (tests/unit/*.h, nbd/testing/*.h,
# each through an empty file that includes it). A GUARDED_BY field touched
# without its mutex, or a REQUIRES function called without it, is an error
# (src/util/thread_annotations.h, src/util/mutex.h). Not the *_test.cc files:
# clang 14 cannot compile some of them (a lambda capturing a structured
# binding: C++20, in clang from 16). Syntax only, no objects: one stamp per
# file under build/tsa/, so it runs in parallel and again only for files whose
# text or headers changed. `make test` runs it before the suite.
.PHONY: thread-safety
TSA_CXX    ?= clang++
# -Wno-thread-safety-precise: the engine's parts share the volume's mutexes
# through references (FlushPipeline::layers_ is Volume::layers_), which clang
# cannot prove are one object; an access with no such mutex held still fails.
TSA_FLAGS  := -std=c++20 -fsyntax-only -Wthread-safety -Wthread-safety-beta -Wno-thread-safety-precise -Werror \
              -pthread -I. $(PKG_CFLAGS)
TSA_SRCS   := $(filter-out %_test.cc,$(ALL_SRCS))
TSA_HDRS   := $(wildcard tests/unit/*.h nbd/testing/*.h)
TSA_STAMPS := $(TSA_SRCS:%.cc=$(BUILD)/tsa/%.ok) $(TSA_HDRS:%=$(BUILD)/tsa/%.ok)

$(BUILD)/tsa/%.ok: %.cc
	@mkdir -p $(dir $@)
	$(TSA_CXX) $(TSA_FLAGS) -MMD -MP -MF $(@:.ok=.d) -MT $@ $<
	@touch $@

$(BUILD)/tsa/%.h.ok: %.h
	@mkdir -p $(dir $@)
	$(TSA_CXX) $(TSA_FLAGS) -MMD -MP -MF $(@:.ok=.d) -MT $@ -include $< -x c++ /dev/null
	@touch $@

thread-safety: $(TSA_STAMPS)

-include $(TSA_STAMPS:.ok=.d)
