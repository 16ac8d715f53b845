# tsbox: `make demo` and `make test` are the two commands; see README.md.
SHELL := /bin/bash
.DEFAULT_GOAL := build

NODE_BIN := node_modules/.bin
CONTAINERD2 = $(shell scripts/containerd2-dir)
PROTOS := $(shell find proto -name '*.proto' | sort)

.PHONY: setup build native ts proto images test test-unit test-engine test-e2e test-e2e-containerd2 test-vm test-runtime-tools test-critest test-rust lint fmt demo clean

setup:
	scripts/setup

build: native ts images

# The napi addon (build/native/index.node), tsbox-sandbox, the shim's native front and the
# native `tsbox` CLI (build/bin/; bin/containerd-shim-tsbox-v2 and bin/tsbox link there).
native:
	$(NODE_BIN)/napi build --release --manifest-path addon/Cargo.toml -p tsbox-napi \
		--output-dir build/native
	cargo build --release --quiet --manifest-path addon/Cargo.toml -p tsbox-sandbox -p tsbox-shim-front -p tsbox-cli
	install -D -m 0755 addon/target/release/tsbox-sandbox build/bin/tsbox-sandbox
	install -D -m 0755 addon/target/release/tsbox build/bin/tsbox
	install -D -m 0755 addon/target/release/containerd-shim-tsbox-v2 build/bin/containerd-shim-tsbox-v2

# Static protobuf code: nothing parses .proto files when the shim starts.
proto: src/gen/proto.js src/gen/proto.d.ts

src/gen/proto.js: $(PROTOS)
	@mkdir -p src/gen
	$(NODE_BIN)/pbjs -t static-module -w commonjs --no-verify --no-delimited --no-convert \
		--force-number -p proto -o $@ $(PROTOS)

src/gen/proto.d.ts: src/gen/proto.js
	$(NODE_BIN)/pbts -o $@ $<

BUNDLE_FLAGS := --bundle --platform=node --target=node20 --format=cjs --minify-whitespace --minify-syntax \
	--legal-comments=none --external:'*.node' --log-level=warning

ts: proto
	$(NODE_BIN)/tsc -p tsconfig.json
	$(NODE_BIN)/tsc -p tsconfig.build.json
	install -D -m 0644 src/gen/proto.js dist/gen/proto.js
	@# What runs: one file each for the daemon code and the CLI. Node then resolves no
	@# packages at start (package "exports" alone pull in Node's ESM resolver) and compiles
	@# less: the daemon idles ~6 MB PSS smaller, the CLI starts faster. Names are kept, so
	@# stack traces in logs stay readable.
	$(NODE_BIN)/esbuild dist/shim/start.js --outfile=dist/bundle/shim.js $(BUNDLE_FLAGS)
	$(NODE_BIN)/esbuild dist/cli/run.js --outfile=dist/bundle/tsbox.js $(BUNDLE_FLAGS)
	@# The features document the shim's native front answers -info with (no Node start).
	node -e 'process.stdout.write(JSON.stringify(require("./dist/oci/features").features(require("./package.json").version)))' > dist/features.json

images:
	scripts/images/build

# Every lane: Rust unit tests; jest's unit, engine and e2e projects (e2e on Debian's
# containerd 1.6); the e2e project again on containerd 2.x (built by setup); the engine and
# e2e projects in a cgroup v2 VM (scripts/vm); OCI runtime-tools' validations and CRI's
# critest beside runc. One summary line over the jest lanes.
RESULTS := build/jest-results.json build/jest-results-containerd2.json build/vm/jest-results.json
test: setup build
	$(MAKE) --no-print-directory lint
	$(MAKE) --no-print-directory test-rust
	@rm -f $(RESULTS); status=0; \
	$(NODE_BIN)/jest --ci --json --outputFile=build/jest-results.json || status=1; \
	TSBOX_CONTAINERD_DIR=$(CONTAINERD2) $(NODE_BIN)/jest --ci --selectProjects e2e \
		--json --outputFile=build/jest-results-containerd2.json || status=1; \
	$(MAKE) --no-print-directory test-vm || status=1; \
	$(MAKE) --no-print-directory test-runtime-tools || status=1; \
	$(MAKE) --no-print-directory test-critest || status=1; \
	node -e 'const rs = process.argv.slice(1).map((f) => { try { return require(`./$${f}`); } catch { return { numPassedTests: 0, numFailedTests: 1 }; } }); const sum = (k) => rs.reduce((n, r) => n + r[k], 0); console.log(`jest: $${sum("numPassedTests")} passed, $${sum("numFailedTests")} failed`)' $(RESULTS); \
	exit $$status

# The cgroup v2 lane: the engine and e2e projects inside a VM booting Debian's kernel with
# cgroup v1 off (scripts/vm; TCG where KVM cannot boot it). reliability.test.ts stays on the
# host: it measures the daemon under load (400 execs, 100 containers at once), nothing that
# depends on the cgroup version, and emulation makes it take longer than its limits.
test-vm:
	scripts/vm prepare
	@mkdir -p build/vm
	TSBOX_VM_OUT=$(CURDIR)/build/vm scripts/vm run \
		'$(NODE_BIN)/jest --ci --selectProjects engine e2e --testPathIgnorePatterns test/e2e/reliability \
		--json --outputFile=build/vm/jest-results.json'

# OCI runtime-tools' validation programs against bin/tsbox and Debian's runc: fails if
# tsbox fails one that runc passes (scripts/runtime-tools).
test-runtime-tools:
	scripts/runtime-tools compare

# critest (CRI validation) with handler runc, then tsbox, on containerd 1.6 and 2.x (and
# on 2.x tsbox-shim, the shim sandboxer): fails if tsbox fails a test that runc passes, or
# tsbox-shim one that tsbox passes (scripts/critest).
test-critest:
	scripts/critest compare

test-unit:
	$(NODE_BIN)/jest --selectProjects unit

test-engine:
	$(NODE_BIN)/jest --selectProjects engine

test-e2e:
	$(NODE_BIN)/jest --selectProjects e2e

test-e2e-containerd2:
	TSBOX_CONTAINERD_DIR=$(CONTAINERD2) $(NODE_BIN)/jest --selectProjects e2e

test-rust:
	cargo test --release --quiet --manifest-path addon/Cargo.toml

# The lint gate: rustfmt and clippy over the addon workspace, ESLint with type information
# (typescript-eslint's recommended-type-checked rules) over src/ and test/, and prettier.
# ESLint types the code from src/gen (proto) and the addon's build/native/index.d.ts, made
# by `make native` when missing. `make fmt` applies both formatters.
PRETTIER_FILES := src test scripts/*.js scripts/soak jest.config.js eslint.config.mjs
lint: proto build/native/index.d.ts
	cargo fmt --manifest-path addon/Cargo.toml --all --check
	cargo clippy --quiet --manifest-path addon/Cargo.toml --all-targets -- -D warnings
	$(NODE_BIN)/eslint --max-warnings 0 src test
	$(NODE_BIN)/prettier --check --log-level warn $(PRETTIER_FILES)

fmt:
	cargo fmt --manifest-path addon/Cargo.toml --all
	$(NODE_BIN)/prettier --write --log-level warn $(PRETTIER_FILES)

build/native/index.d.ts:
	$(MAKE) --no-print-directory native

demo: setup build
	scripts/demo

clean:
	rm -rf build dist src/gen addon/target
