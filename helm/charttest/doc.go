// Package charttest checks duet's deployment artifacts without a cluster:
// the Helm chart in ../duet and the Dockerfile in ../../docker.
//
// The chart is linted and rendered with the Helm SDK at a pinned version
// (helm.sh/helm/v3, the same code as `helm lint --strict` and
// `helm template`; `make helm-lint` runs the CLI built from that module
// with `go tool helm`). Every object rendered, with the default values and
// with each values file in ../duet/ci, is decoded strictly into its
// Kubernetes API type (k8s.io/api; the ServiceMonitor into the Prometheus
// Operator's type): an unknown, misspelled or duplicated field fails, as
// the API server would refuse it. The tests then check what a decoder
// cannot: selectors select exactly their own component's pods, named
// ports and volumes exist, grace periods cover the drain, and scaling one
// pool changes nothing but that pool's Deployment.
//
// The package has no exported API; it exists for its tests. It is a module
// of its own so that the Helm and Kubernetes libraries stay out of every
// binary's dependency graph.
package charttest
