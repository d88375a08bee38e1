//go:build tools

// Package tools pins the commands this module builds: Flux's source-controller and
// kustomize-controller.
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
	_ "github.com/fluxcd/source-controller"
)
