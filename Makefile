# Lawtrail — the one entry point. `make run` brings the system up locally; `make test` is what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# uv installed by pip may not be on PATH (pyenv shims): `python3 -m uv` always works.
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
UV_VERSION := 0.13.8
RUN := $(UV) run --frozen --all-packages
BUF := tools/node_modules/.bin/buf
PY_SRC := libs/servicekit/src/servicekit libs/merkle/src/lawtrail_merkle services/case-svc/src/case_svc services/media-svc/src/media_svc \
          services/retention-svc/src/retention_svc services/access-svc/src/access_svc \
          services/compliance-svc/src/compliance_svc \
          clients/src/lawtrail_client deploy/local/src/lawtrail_local tools bench
# deploy/k8s validation tools: kustomize built once per machine into the cache (never @master),
# promtool from Debian's prometheus; kubernetes-validate is a dev dependency (uv.lock).
CACHE_DIR := $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/lawtrail
KUSTOMIZE_VERSION := 5.8.1
KUSTOMIZE := $(CACHE_DIR)/kustomize-$(KUSTOMIZE_VERSION)/kustomize
UNIT_TESTS := $(wildcard libs/*/tests services/*/tests/unit clients/tests deploy/local/tests tests/unit)

.PHONY: help setup proto proto-baseline lint fmt unit integration test up down run logs bench k8s-tools k8s-validate chaos

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup: ## install what a fresh machine lacks (uv, ffmpeg, postgresql, poppler-utils, buf, the venv); idempotent
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install -q "uv==$(UV_VERSION)"
	@command -v ffprobe >/dev/null 2>&1 || { echo "installing ffmpeg (Debian)…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ffmpeg >/dev/null; }
	@# PostgreSQL for FerretDB's PostgreSQL backend (the local default, ADR 0007); Debian keeps its
	@# binaries in /usr/lib/postgresql/<v>/bin. The package's own cluster is not used (deploy/local inits its own).
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || { echo "installing postgresql (Debian)…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
	@# pdftoppm (poppler-utils): the compliance report test renders the PDF it writes to PNG pages.
	@command -v pdftoppm >/dev/null 2>&1 || { echo "installing poppler-utils (Debian)…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null; }
	@for t in java mvn go npm; do command -v $$t >/dev/null 2>&1 || { echo "missing '$$t' on PATH (needed by the local stack / tools)"; exit 1; }; done
	@[ -x $(BUF) ] || (cd tools && npm ci --no-audit --no-fund --loglevel=error)
	@$(UV) sync --frozen --all-packages --quiet

proto: ## regenerate libs/contracts and docs/events.md from proto/ (never edit generated code)
	$(RUN) python tools/gen_proto.py
	$(RUN) python tools/gen_catalogue.py

proto-baseline: ## record the current contracts as the released baseline for `buf breaking`
	$(BUF) build -o libs/contracts/baseline.binpb

lint: setup ## format check, ruff, mypy, import-linter, buf lint + breaking, generated-code and docs drift, service shape
	$(RUN) ruff format --check .
	$(RUN) ruff check .
	$(RUN) mypy $(PY_SRC)
	$(RUN) lint-imports
	$(BUF) lint
	$(BUF) breaking --against libs/contracts/baseline.binpb
	$(RUN) python tools/gen_proto.py --check
	$(RUN) python tools/gen_catalogue.py --check
	$(RUN) python tools/gen_permissions.py --check
	$(RUN) python tools/check_shape.py

fmt: ## format and autofix
	$(RUN) ruff format .
	$(RUN) ruff check --fix .

unit: setup ## unit tests (no network, milliseconds each)
	$(RUN) pytest -q -m "not integration" $(UNIT_TESTS)

integration: setup ## integration tests: start their own Kafka + FerretDB + services on free ports
	$(RUN) pytest -q -m integration tests/integration $(UNIT_TESTS)

k8s-tools: ## install kustomize (pinned, cached) and promtool (Debian prometheus) if missing
	@[ -x $(KUSTOMIZE) ] || { echo "building kustomize v$(KUSTOMIZE_VERSION) into $(dir $(KUSTOMIZE))…"; \
	  GOBIN=$(dir $(KUSTOMIZE)) go install sigs.k8s.io/kustomize/kustomize/v5@v$(KUSTOMIZE_VERSION); }
	@$(KUSTOMIZE) version | grep -q "v$(KUSTOMIZE_VERSION)" || { echo "$(KUSTOMIZE) is not v$(KUSTOMIZE_VERSION)"; exit 1; }
	@command -v promtool >/dev/null 2>&1 || { echo "installing prometheus (Debian) for promtool…"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }

k8s-validate: setup k8s-tools ## deploy/k8s offline: kustomize build | kubernetes-validate --strict, CRD schemas, policies, drift, promtool
	@for overlay in deploy/k8s/overlays/*/; do echo "kustomize build $$overlay | kubernetes-validate --strict"; \
	  $(KUSTOMIZE) build $$overlay | $(RUN) kubernetes-validate --strict --quiet --no-warn -; done
	KUSTOMIZE=$(KUSTOMIZE) UV="$(UV)" $(RUN) pytest -q deploy/k8s/tests

test: setup lint unit integration k8s-validate ## everything CI runs

# Its own --basetemp: pytest prunes all but the newest three /tmp/pytest-of-<user> runs, so a long run's
# broker data could be deleted under it by any other pytest started meanwhile.
chaos: setup ## S1 crash + S2 interrupted-upload suites on their own stack (7 min on a quiet 2-core machine, far longer on a busy one; prints the figures)
	@mkdir -p .lawtrail  # pytest creates --basetemp but not its parent (a fresh clone has none)
	$(RUN) pytest -q -s -p no:cacheprovider --basetemp=.lawtrail/chaos-tmp -m chaos tests/integration/chaos

up: setup ## start Kafka, FerretDB and the services in the background; returns when ready
	$(RUN) python -m lawtrail_local up

down: ## stop what `make up` started
	$(RUN) python -m lawtrail_local down

logs: ## follow the logs of the local stack
	$(RUN) python -m lawtrail_local logs

run: setup ## up + a short guided scenario + logs until Ctrl-C, then a clean stop
	$(RUN) python -m lawtrail_local run

bench: setup ## benchmarks: ratios measured in one run
	$(RUN) python -m bench
