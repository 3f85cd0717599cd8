// Package leadershippb is the generated Go code of protos/leadership.proto,
// the Leadership service by which a Cairn gateway learns which orderer leads a
// channel's raft group. Regenerate it with protos/gen.sh; do not edit the
// .pb.go files by hand.
package leadershippb
