// Package cluster is a placeholder until its first code lands.
package cluster
