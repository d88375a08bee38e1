// Pins the Istio and Gateway API releases whose CRDs the traffic-routing tests install.
// Nothing is built: crds.sh downloads the modules and reads the CRDs they ship.
module sluice.dev/e2e/routercrds

go 1.26

require (
	istio.io/api v1.32.0
	sigs.k8s.io/gateway-api v1.6.3
)
