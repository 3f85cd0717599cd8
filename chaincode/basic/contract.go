// Package basic is Cairn's copy of Fabric's asset-transfer-basic sample
// contract, written with fabric-contract-api-go, plus the code that connects it
// to a peer as a chaincode process.
//
// The contract API (function names, argument order, JSON field names and
// error texts) matches hyperledger/fabric-samples asset-transfer-basic exactly,
// so applications written against the Fabric sample work unchanged. Unlike the
// sample, every write also emits a chaincode event named after the function
// whose payload is the JSON of the asset(s) written.
//
// # Running
//
// Run connects to the peer the standard way for a chaincode-as-client process
// and blocks until the connection ends. It reads the same environment as
// Fabric's Go shim (github.com/hyperledger/fabric-chaincode-go/v2/shim v2.3.0):
//
//   - CORE_CHAINCODE_ID_NAME: the package ID the chaincode registers as (required).
//   - CORE_PEER_ADDRESS: the peer's chaincode listener, host:port. The shim
//     itself only reads the -peer.address flag, which Fabric's builders pass on
//     the command line; Run accepts either, the flag winning.
//   - CORE_PEER_TLS_ENABLED: "true" or "false" (required, as in the shim).
//   - CORE_PEER_TLS_ROOTCERT_FILE: PEM file of the CA(s) that issued the peer's
//     TLS certificate.
//   - CORE_TLS_CLIENT_KEY_PATH / CORE_TLS_CLIENT_CERT_PATH: files holding the
//     client TLS key and certificate as BASE64 OF THE PEM text (this is what
//     Fabric's peer writes into chaincode containers). CORE_TLS_CLIENT_KEY_FILE /
//     CORE_TLS_CLIENT_CERT_FILE, when set, name plain PEM files instead and win.
//
// When CHAINCODE_SERVER_ADDRESS and CORE_CHAINCODE_ID_NAME are both set, Run
// instead serves the chaincode as an external service (Fabric "ccaas") through
// contractapi, which reads CHAINCODE_TLS_DISABLED, CHAINCODE_TLS_KEY,
// CHAINCODE_TLS_CERT and CHAINCODE_CLIENT_CA_CERT (plain PEM files).
//
// # Concurrency
//
// The contract is stateless: the shim may run many transactions at once and
// each only touches its own stub. Serve owns the gRPC connection it dials and
// returns only after the shim's chat with the peer has ended.
package basic

import (
	"encoding/json"
	"fmt"

	"github.com/hyperledger/fabric-contract-api-go/v2/contractapi"
)

// Asset is the ledger record; the JSON field names are those of the Fabric
// sample and are part of the wire contract with applications.
type Asset struct {
	ID             string `json:"ID"`
	Color          string `json:"Color"`
	Size           int    `json:"Size"`
	Owner          string `json:"Owner"`
	AppraisedValue int    `json:"AppraisedValue"`
}

// SmartContract implements the asset-transfer-basic transactions.
type SmartContract struct {
	contractapi.Contract
}

// NewChaincode returns the chaincode (shim.Chaincode) wrapping SmartContract.
func NewChaincode() (*contractapi.ContractChaincode, error) {
	cc, err := contractapi.NewChaincode(&SmartContract{})
	if err != nil {
		return nil, fmt.Errorf("create basic chaincode: %w", err)
	}
	return cc, nil
}

// InitLedger adds the sample's six starting assets.
func (s *SmartContract) InitLedger(ctx contractapi.TransactionContextInterface) error {
	assets := []*Asset{
		{ID: "asset1", Color: "blue", Size: 5, Owner: "Tomoko", AppraisedValue: 300},
		{ID: "asset2", Color: "red", Size: 5, Owner: "Brad", AppraisedValue: 400},
		{ID: "asset3", Color: "green", Size: 10, Owner: "Jin Soo", AppraisedValue: 500},
		{ID: "asset4", Color: "yellow", Size: 10, Owner: "Max", AppraisedValue: 600},
		{ID: "asset5", Color: "black", Size: 15, Owner: "Adriana", AppraisedValue: 700},
		{ID: "asset6", Color: "white", Size: 15, Owner: "Michel", AppraisedValue: 800},
	}
	stub := ctx.GetStub()
	// Six puts in one round trip when the peer supports write batches; a
	// no-op otherwise. The shim flushes the batch after the function returns.
	stub.StartWriteBatch()
	for _, asset := range assets {
		if err := putAsset(ctx, asset); err != nil {
			return err
		}
	}
	return emit(ctx, "InitLedger", assets)
}

// CreateAsset issues a new asset with the given details.
func (s *SmartContract) CreateAsset(ctx contractapi.TransactionContextInterface, id string, color string, size int, owner string, appraisedValue int) error {
	exists, err := s.AssetExists(ctx, id)
	if err != nil {
		return err
	}
	if exists {
		return fmt.Errorf("the asset %s already exists", id)
	}
	asset := &Asset{ID: id, Color: color, Size: size, Owner: owner, AppraisedValue: appraisedValue}
	if err := putAsset(ctx, asset); err != nil {
		return err
	}
	return emit(ctx, "CreateAsset", asset)
}

// ReadAsset returns the asset stored under id.
func (s *SmartContract) ReadAsset(ctx contractapi.TransactionContextInterface, id string) (*Asset, error) {
	assetJSON, err := ctx.GetStub().GetState(id)
	if err != nil {
		return nil, fmt.Errorf("failed to read from world state: %w", err)
	}
	if assetJSON == nil {
		return nil, fmt.Errorf("the asset %s does not exist", id)
	}
	var asset Asset
	if err := json.Unmarshal(assetJSON, &asset); err != nil {
		return nil, fmt.Errorf("decode asset %s: %w", id, err)
	}
	return &asset, nil
}

// UpdateAsset replaces an existing asset's details.
func (s *SmartContract) UpdateAsset(ctx contractapi.TransactionContextInterface, id string, color string, size int, owner string, appraisedValue int) error {
	exists, err := s.AssetExists(ctx, id)
	if err != nil {
		return err
	}
	if !exists {
		return fmt.Errorf("the asset %s does not exist", id)
	}
	asset := &Asset{ID: id, Color: color, Size: size, Owner: owner, AppraisedValue: appraisedValue}
	if err := putAsset(ctx, asset); err != nil {
		return err
	}
	return emit(ctx, "UpdateAsset", asset)
}

// DeleteAsset removes an asset; the event carries the deleted asset.
func (s *SmartContract) DeleteAsset(ctx contractapi.TransactionContextInterface, id string) error {
	// ReadAsset rather than AssetExists: the event needs the old value, and
	// the error text for a missing asset is the same.
	asset, err := s.ReadAsset(ctx, id)
	if err != nil {
		return err
	}
	if err := ctx.GetStub().DelState(id); err != nil {
		return fmt.Errorf("failed to delete asset %s: %w", id, err)
	}
	return emit(ctx, "DeleteAsset", asset)
}

// AssetExists reports whether an asset is stored under id.
func (s *SmartContract) AssetExists(ctx contractapi.TransactionContextInterface, id string) (bool, error) {
	assetJSON, err := ctx.GetStub().GetState(id)
	if err != nil {
		return false, fmt.Errorf("failed to read from world state: %w", err)
	}
	return assetJSON != nil, nil
}

// TransferAsset changes the owner and returns the previous owner.
func (s *SmartContract) TransferAsset(ctx contractapi.TransactionContextInterface, id string, newOwner string) (string, error) {
	asset, err := s.ReadAsset(ctx, id)
	if err != nil {
		return "", err
	}
	oldOwner := asset.Owner
	asset.Owner = newOwner
	if err := putAsset(ctx, asset); err != nil {
		return "", err
	}
	if err := emit(ctx, "TransferAsset", asset); err != nil {
		return "", err
	}
	return oldOwner, nil
}

// GetAllAssets returns every asset in the chaincode's namespace, in key order.
func (s *SmartContract) GetAllAssets(ctx contractapi.TransactionContextInterface) ([]*Asset, error) {
	// An open range ("" to "") covers every simple key in the namespace.
	iter, err := ctx.GetStub().GetStateByRange("", "")
	if err != nil {
		return nil, fmt.Errorf("failed to query world state: %w", err)
	}
	defer iter.Close()

	var assets []*Asset
	for iter.HasNext() {
		kv, err := iter.Next()
		if err != nil {
			return nil, fmt.Errorf("failed to read range result: %w", err)
		}
		var asset Asset
		if err := json.Unmarshal(kv.Value, &asset); err != nil {
			return nil, fmt.Errorf("decode asset %s: %w", kv.Key, err)
		}
		assets = append(assets, &asset)
	}
	return assets, nil
}

func putAsset(ctx contractapi.TransactionContextInterface, asset *Asset) error {
	assetJSON, err := json.Marshal(asset)
	if err != nil {
		return fmt.Errorf("encode asset %s: %w", asset.ID, err)
	}
	if err := ctx.GetStub().PutState(asset.ID, assetJSON); err != nil {
		return fmt.Errorf("failed to put to world state: %w", err)
	}
	return nil
}

// emit sets the transaction's chaincode event. Fabric keeps one event per
// transaction, so a later call in the same transaction replaces this one.
func emit(ctx contractapi.TransactionContextInterface, name string, payload any) error {
	body, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", name, err)
	}
	if err := ctx.GetStub().SetEvent(name, body); err != nil {
		return fmt.Errorf("set %s event: %w", name, err)
	}
	return nil
}
