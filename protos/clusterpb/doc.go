// Package clusterpb is the generated Go code of protos/cluster.proto, Cairn's
// orderer-to-orderer Cluster service. Regenerate it with protos/gen.sh; do not
// edit the .pb.go files by hand.
package clusterpb
