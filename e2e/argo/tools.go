//go:build tools

// Package tools pins the command this module builds: Argo Rollouts' controller.
package tools

import _ "github.com/argoproj/argo-rollouts/cmd/rollouts-controller"
