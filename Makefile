# The two commands of the README.
.PHONY: demo test lab crds chart-files argocd-cm bench

## The demo: v2 promoted, v3 rolled back by analysis. ARGS="--keep" keeps the stack up;
## ARGS="--strategy bluegreen" shows a blue-green release.
demo:
	scripts/demo.sh $(ARGS)

## Everything CI runs: dependencies, format, clippy, unit and integration tests, the demos.
test:
	scripts/test.sh

## Labs for learners (docs/labs/): SCENARIO=crashloop runs one (SCENARIO=list, the default,
## lists them); SCENARIO=all ARGS=--scripted runs every lab in the learner's place, as make test does.
SCENARIO ?= list
lab:
	scripts/lab.sh $(SCENARIO) $(ARGS)

## The chart's copies of the alerts and dashboards (charts/sluice/files) from dashboards/.
chart-files:
	cp dashboards/alerts.yaml charts/sluice/files/alerts.yaml
	cp dashboards/*.json charts/sluice/files/dashboards/

## The Argo CD block (integrations/argocd/argocd-cm.yaml and the chart's copy) from the Lua scripts.
argocd-cm:
	scripts/argocd-cm.sh

## Regenerate crds/ and the chart's copy (charts/sluice/crds) from src/api.
crds:
	cargo run --quiet --bin crdgen
	cargo run --quiet --bin crdgen charts/sluice/crds

## Sluice and Argo Rollouts side by side on one local API server (N="1000" by default;
## N="100,1000,10000" runs each size on a fresh control plane). Prints tables, writes JSON.
N ?= 1000
bench:
	scripts/bench.sh $(N) $(ARGS)
