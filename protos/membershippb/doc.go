// Package membershippb is the generated Go code of protos/membership.proto,
// Cairn's peer-to-peer Membership service. Regenerate it with protoc as
// protos/gen.sh does; do not edit the .pb.go files by hand.
package membershippb
