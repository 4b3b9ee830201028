# The single entry point of the repository. `make help` lists every target.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-print-directory

VENV := .venv
PY := $(VENV)/bin/python
# System packages the tests, the demo and the linters need (Debian 12 / Ubuntu 24.04 names).
APT_PACKAGES := postgresql-15 nginx docker.io rsync shellcheck busybox-static openssl git curl \
	skopeo docker-registry slurm-wlm munge openssh-server openssh-client chromium socat \
	debootstrap iproute2 apt-utils netcat-openbsd gnupg
# 4.74+ needs Node >= 22; Debian 12 ships Node 20.
GITLAB_CI_LOCAL_VERSION := 4.73.0
# The installer of both Python environments (from PyPI, bootstrapped into .venv with pip).
UV_VERSION := 0.9.5
UV := $(VENV)/bin/uv
# The GitLab stand-in of tests and `make demo-dev` (local/identity/): panva's OpenID provider.
OIDC_PROVIDER_VERSION := 9.13.3
# JupyterHub's proxy (the hub tests and make demo-dev start it).
CONFIGURABLE_HTTP_PROXY_VERSION := 5.3.0

.PHONY: help setup system-packages lock test test-deploy lint bench
.PHONY: demo demo-stop demo-dev demo-dev-stop
.PHONY: secrets render deploy backup images-lock images-mirror

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: system-packages $(VENV)/.installed $(VENV)/bin/gitlab-ci-local $(VENV)/npm/node_modules/oidc-provider/.installed-$(OIDC_PROVIDER_VERSION) $(VENV)/bin/configurable-http-proxy ## Install system packages, .venv and tools (idempotent, fast when done)

system-packages:
	@missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q "install ok installed" || echo "$$p"; done); \
	missing=$$(echo $$missing); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> apt-get install $$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "Missing system packages. Install them as root, then run make setup again:"; \
	    echo "  sudo apt-get update && sudo apt-get install -y $$missing"; \
	    exit 1; \
	  fi; \
	fi

$(UV):
	@test -x $(PY) || python3 -m venv $(VENV)
	@$(PY) -m pip --version >/dev/null 2>&1 || $(PY) -m ensurepip >/dev/null
	@$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION) 2>&1 | grep -v 'is ignored: it is neither' || true
	@test -x $@

# Everything (tests, linters, provisioning); it includes what the demo needs.
$(VENV)/.installed: pyproject.toml constraints.txt local/pyproject.toml bridge/client/pyproject.toml environments/hub/pyproject.toml | $(UV)
	@echo "==> Python environment in $(VENV) (uv, with constraints.txt)"
	@VIRTUAL_ENV=$(VENV) $(UV) pip install -q -c constraints.txt -e '.[dev]' -e ./local -e ./bridge/client -e ./environments/hub
	@VIRTUAL_ENV=$(VENV) $(UV) pip check -q
	@touch $@ $(VENV)/.installed-demo

# Only what `make demo` needs: a first demo does not wait for linters and test tools.
$(VENV)/.installed-demo: pyproject.toml constraints.txt local/pyproject.toml | $(UV)
	@echo "==> Python environment for the demo in $(VENV) (uv, with constraints.txt)"
	@VIRTUAL_ENV=$(VENV) $(UV) pip install -q -c constraints.txt -e '.[demo]' -e ./local
	@touch $@

$(VENV)/bin/gitlab-ci-local: | $(UV)
	@echo "==> gitlab-ci-local $(GITLAB_CI_LOCAL_VERSION)"
	@npm install -s --no-audit --no-fund --prefix $(VENV)/npm gitlab-ci-local@$(GITLAB_CI_LOCAL_VERSION)
	@ln -sf ../npm/node_modules/.bin/gitlab-ci-local $@

$(VENV)/bin/configurable-http-proxy: | $(VENV)/.installed
	@echo "==> configurable-http-proxy $(CONFIGURABLE_HTTP_PROXY_VERSION)"
	@npm install -s --no-audit --no-fund --prefix $(VENV)/npm configurable-http-proxy@$(CONFIGURABLE_HTTP_PROXY_VERSION)
	@ln -sf ../npm/node_modules/.bin/configurable-http-proxy $@

$(VENV)/npm/node_modules/oidc-provider/.installed-$(OIDC_PROVIDER_VERSION): | $(VENV)/.installed
	@echo "==> oidc-provider $(OIDC_PROVIDER_VERSION) (the GitLab stand-in)"
	@npm install -s --no-audit --no-fund --prefix $(VENV)/npm oidc-provider@$(OIDC_PROVIDER_VERSION)
	@touch $@

lock: ## Regenerate constraints.txt from a fresh install of pyproject.toml
	rm -rf .venv-lock && python3 -m venv .venv-lock
	.venv-lock/bin/pip install -q -e '.[dev]'
	{ head -2 constraints.txt; .venv-lock/bin/pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt && rm -rf .venv-lock

test: setup ## Run every test but the converge test (real Postgres, MLflow, nginx, Docker, gitlab-ci-local)
	$(VENV)/bin/pytest -m "not deploy"

test-deploy: setup ## Converge test: `make deploy` of both shipped inventories on fresh Debian 12 hosts, side by side (tests/deploy/README.md)
	$(VENV)/bin/pytest -m deploy -n 2 --dist loadfile tests/deploy

lint: setup ## Run every linter (Python, shell, Dockerfiles, Ansible)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	cd ansible && for inv in example single-host; do $(ANSIBLE) ansible-playbook -i inventories/$$inv --syntax-check playbooks/site.yml playbooks/render.yml playbooks/backup.yml; done
	cd ansible && $(ANSIBLE) ansible-lint --offline --profile production -q
	$(VENV)/bin/yamllint -c ansible/.yamllint ansible
	shellcheck ansible/roles/runner_host/files/runner-disk-cleanup
	$(VENV)/bin/hadolint bridge/Dockerfile
	$(VENV)/bin/hadolint environments/*/Dockerfile pipeline-templates/tests/environment/Dockerfile
	shellcheck environments/*/*.sh
	$(VENV)/bin/yamllint -c pipeline-templates/.yamllint.yml pipeline-templates examples

bench: setup ## Run the benchmarks and print their tables
	$(PY) -m tests.bench

demo: system-packages $(VENV)/.installed-demo $(VENV)/bin/gitlab-ci-local ## Run the platform locally (Postgres, S3, MLflow, bridge) and the example pipeline
	$(PY) -m local.demo up

demo-stop: ## Stop every service `make demo` started and remove .demo/
	$(PY) -m local.demo down

demo-dev: setup ## Start the GitLab stand-in, MLflow and JupyterHub (local Docker) on loopback; print logins, SSH
	$(PY) -m local.demo_dev up

demo-dev-stop: ## Stop every service `make demo-dev` started, remove its containers, volumes and .demo-dev/
	$(PY) -m local.demo_dev down

# ---- Provisioning (Ansible) -------------------------------------------------------------
# INVENTORY: a folder of ansible/inventories (example, single-host) or a path to your own.
# SECRETS: where `make secrets` writes and the roles read (git-ignored secrets/ by default).
INVENTORY ?= example
SECRETS ?= secrets
DEST ?= rendered
INVENTORY_DIR = $(if $(wildcard ansible/inventories/$(INVENTORY)/hosts.yml),$(abspath ansible/inventories/$(INVENTORY)),$(abspath $(INVENTORY)))
ANSIBLE = ANSIBLE_CONFIG=$(CURDIR)/ansible/ansible.cfg PATH="$(abspath $(VENV))/bin:$$PATH"
# IMAGES_LOCK: another image lock than ansible/images.lock.yml (e.g. one resolved from a site registry).
IMAGES_LOCK ?=
PLAYBOOK = cd ansible && $(ANSIBLE) ansible-playbook -i $(INVENTORY_DIR) -e platform_secrets_dir=$(abspath $(SECRETS)) \
  $(if $(IMAGES_LOCK),-e platform_images_lock=$(abspath $(IMAGES_LOCK)))
IMAGES = $(PY) ansible/scripts/images.py

secrets: $(VENV)/.installed ## Generate the missing secrets of INVENTORY into SECRETS (files 0600, never overwritten)
	$(PY) ansible/scripts/make_secrets.py --inventory $(INVENTORY_DIR) --secrets $(SECRETS)

render: $(VENV)/.installed ## Write every file a deploy of INVENTORY would write to DEST/<host>/<path>, touching nothing else
	@if [ -d "$(DEST)" ] && [ -n "$$(ls -A "$(DEST)")" ]; then echo "DEST=$(DEST) is not empty: choose a new folder" >&2; exit 1; fi
	mkdir -p $(DEST)
	$(PLAYBOOK) playbooks/render.yml -e platform_render=true -e platform_render_dest=$(abspath $(DEST)) \
	  -e ansible_connection=local -e ansible_become=false -e ansible_python_interpreter=$(abspath $(PY))

deploy: $(VENV)/.installed ## Provision every host of INVENTORY (after `make secrets`); a second run reports changed=0
	$(PLAYBOOK) playbooks/site.yml

backup: $(VENV)/.installed ## Back up the service host of INVENTORY into MinIO now (same as the nightly timer)
	$(PLAYBOOK) playbooks/backup.yml

images-lock: $(VENV)/.installed ## Read each image tag's digest from its registry into ansible/images.lock.yml (needs registry access)
	$(IMAGES) lock $(if $(IMAGES_LOCK),--lock $(abspath $(IMAGES_LOCK)))

images-mirror: $(VENV)/.installed ## Copy every locked image by digest into the site registry MIRROR=host:port
	@if [ -z "$(MIRROR)" ]; then echo "Set MIRROR=host:port (the site registry), e.g. make images-mirror MIRROR=registry.lab:5000" >&2; exit 1; fi
	$(IMAGES) mirror --to $(MIRROR) $(if $(IMAGES_LOCK),--lock $(abspath $(IMAGES_LOCK)))
