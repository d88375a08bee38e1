# The two commands of the README.
.PHONY: demo test crds

## The demo: v2 promoted, v3 rolled back by analysis. ARGS="--keep" keeps the stack up;
## ARGS="--strategy bluegreen" shows a blue-green release.
demo:
	scripts/demo.sh $(ARGS)

## Everything CI runs: dependencies, format, clippy, unit and integration tests, the demos.
test:
	scripts/test.sh

## Regenerate crds/ from src/api.
crds:
	cargo run --quiet --bin crdgen
