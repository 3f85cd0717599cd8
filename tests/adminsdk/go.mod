module github.com/cairn-ledger/cairn/tests/adminsdk

go 1.26.0

require (
	github.com/cairn-ledger/cairn v0.0.0
	github.com/hyperledger/fabric-admin-sdk v0.2.0
	github.com/hyperledger/fabric-gateway v1.11.0
	github.com/hyperledger/fabric-protos-go-apiv2 v0.3.7
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/Knetic/govaluate v3.0.0+incompatible // indirect
	github.com/hyperledger/fabric-chaincode-go/v2 v2.3.0 // indirect
	github.com/miekg/pkcs11 v1.1.2 // indirect
	golang.org/x/net v0.61.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
)

// The parent module, from this checkout: the test runs its shimcheck
// chaincode in-process and builds its cairn binary from ../.. (with the
// parent's own go.mod, so the binary is exactly the one the main module ships).
replace github.com/cairn-ledger/cairn => ../..
