# The two commands of the README.
.PHONY: demo test crds

## Start the local stack: a real control plane with Sluice's CRDs and the examples applied.
demo:
	scripts/demo.sh

## Everything CI runs: dependencies, format, clippy, unit and integration tests.
test:
	scripts/test.sh

## Regenerate crds/ from src/api.
crds:
	cargo run --quiet --bin crdgen
