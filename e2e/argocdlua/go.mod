// Argo CD's Lua runtime (gopher-lua) and merge patch, to check Sluice's Argo CD customizations.
module sluice.dev/e2e/argocdlua

go 1.26.0

require (
	github.com/evanphx/json-patch v5.9.11+incompatible
	github.com/yuin/gopher-lua v1.1.2
	layeh.com/gopher-json v0.0.0-20190114024228-97fed8db8427
)
