// Package participation owns the channel participation REST API that osnadmin
// and fabric-admin-sdk speak (/participation/v1/channels): join a channel with a
// config block (the genesis block, or a later config block to onboard from
// the other orderers), list channels, show one, remove one. It translates HTTP
// to calls on a Registrar and errors to Fabric's status codes and JSON bodies.
// Mutual TLS is the server's business, not this handler's.
//
// A Handler is stateless and safe for concurrent use.
package participation

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net/http"
	"regexp"
	"strings"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
	"google.golang.org/protobuf/proto"
)

// Paths of the API, as in Fabric.
const (
	URLBaseV1         = "/participation/v1/"
	URLBaseV1Channels = URLBaseV1 + "channels"
	FormConfigBlock   = "config-block"
	maxFormBytes      = 100 << 20
)

// Errors a Registrar returns that the API reports with their own status.
var (
	ErrChannelNotExist      = errors.New("channel does not exist")
	ErrChannelAlreadyExists = errors.New("channel already exists")
	ErrChannelPendingRemove = errors.New("channel pending removal")
)

// ChannelInfo is the JSON body describing one channel.
type ChannelInfo struct {
	Name              string `json:"name"`
	URL               string `json:"url"`
	ConsensusRelation string `json:"consensusRelation"`
	Status            string `json:"status"`
	Height            uint64 `json:"height"`
}

// ChannelInfoShort is one entry of the channel list.
type ChannelInfoShort struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// ChannelList is the JSON body of the channel list. SystemChannel is always
// null: Cairn has no system channel.
type ChannelList struct {
	SystemChannel *ChannelInfoShort  `json:"systemChannel"`
	Channels      []ChannelInfoShort `json:"channels"`
}

type errorResponse struct {
	Error string `json:"error"`
}

// Registrar manages the channels this orderer is a member of.
type Registrar interface {
	Join(ctx context.Context, configBlock *cb.Block) (ChannelInfo, error)
	Info(name string) (ChannelInfo, error)
	List() []string
	Remove(ctx context.Context, name string) error
}

// Handler serves the API.
type Handler struct {
	reg Registrar
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the API handler; logger may be nil.
func New(reg Registrar, logger *slog.Logger) *Handler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{reg: reg, log: logger, mux: http.NewServeMux()}
	h.mux.HandleFunc(URLBaseV1Channels, h.channels)
	h.mux.HandleFunc(URLBaseV1Channels+"/{channel}", h.channel)
	return h
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if _, err := negotiateContentType(r); err != nil {
		h.sendError(w, http.StatusNotAcceptable, err)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Handler) channels(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		list := ChannelList{}
		for _, n := range h.reg.List() {
			list.Channels = append(list.Channels, ChannelInfoShort{Name: n, URL: URLBaseV1Channels + "/" + n})
		}
		h.send(w, http.StatusOK, list)
	case http.MethodPost:
		h.join(w, r)
	default:
		h.sendNotAllowed(w, fmt.Errorf("invalid request method: %s", r.Method), http.MethodGet, http.MethodPost)
	}
}

func (h *Handler) channel(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("channel")
	if err := ValidateChannelID(name); err != nil {
		h.sendError(w, http.StatusBadRequest, fmt.Errorf("invalid channel ID: %w", err))
		return
	}
	switch r.Method {
	case http.MethodGet:
		info, err := h.reg.Info(name)
		if err != nil {
			h.sendError(w, statusOf(err), err)
			return
		}
		info.URL = URLBaseV1Channels + "/" + info.Name
		h.send(w, http.StatusOK, info)
	case http.MethodDelete:
		if err := h.reg.Remove(r.Context(), name); err != nil {
			h.sendError(w, statusOf(err), fmt.Errorf("cannot remove: %w", err))
			return
		}
		h.log.Info("channel removed", "channel", name)
		w.WriteHeader(http.StatusNoContent)
	default:
		h.sendNotAllowed(w, fmt.Errorf("invalid request method: %s", r.Method), http.MethodGet, http.MethodDelete)
	}
}

func (h *Handler) join(w http.ResponseWriter, r *http.Request) {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		h.sendError(w, http.StatusBadRequest, fmt.Errorf("cannot parse Mime media type: %w", err))
		return
	}
	if mediaType != "multipart/form-data" {
		h.sendError(w, http.StatusUnsupportedMediaType, fmt.Errorf("unsupported Content-Type: %s", mediaType))
		return
	}
	form, err := multipart.NewReader(http.MaxBytesReader(w, r.Body, maxFormBytes), params["boundary"]).ReadForm(maxFormBytes)
	if err != nil {
		h.sendError(w, http.StatusBadRequest, fmt.Errorf("cannot read form from request body: %w", err))
		return
	}
	defer form.RemoveAll()
	files, ok := form.File[FormConfigBlock]
	if !ok {
		h.sendError(w, http.StatusBadRequest, fmt.Errorf("form does not contains part key: %s", FormConfigBlock))
		return
	}
	if len(form.File) != 1 || len(form.Value) != 0 || len(files) != 1 {
		h.sendError(w, http.StatusBadRequest, errors.New("form contains too many parts"))
		return
	}
	f, err := files[0].Open()
	if err != nil {
		h.sendError(w, http.StatusBadRequest, fmt.Errorf("cannot open file part %s from request body: %w", FormConfigBlock, err))
		return
	}
	raw, err := io.ReadAll(f)
	f.Close()
	if err != nil {
		h.sendError(w, http.StatusBadRequest, fmt.Errorf("cannot read file part %s from request body: %w", FormConfigBlock, err))
		return
	}
	b := &cb.Block{}
	if err := proto.Unmarshal(raw, b); err != nil {
		h.sendError(w, http.StatusBadRequest, fmt.Errorf("cannot unmarshal file part %s into a block: %w", FormConfigBlock, err))
		return
	}
	info, err := h.reg.Join(r.Context(), b)
	switch {
	case err == nil:
	case errors.Is(err, ErrChannelAlreadyExists):
		// Fabric answers 405 and lists what may be done with the channel.
		h.sendNotAllowed(w, fmt.Errorf("cannot join: %w", err), http.MethodGet, http.MethodDelete)
		return
	case errors.Is(err, ErrChannelPendingRemove):
		h.sendError(w, http.StatusConflict, fmt.Errorf("cannot join: %w", err))
		return
	default:
		h.sendError(w, http.StatusBadRequest, fmt.Errorf("cannot join: %w", err))
		return
	}
	info.URL = URLBaseV1Channels + "/" + info.Name
	h.log.Info("channel joined", "channel", info.Name, "relation", info.ConsensusRelation)
	w.Header().Set("Location", info.URL)
	h.send(w, http.StatusCreated, info)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrChannelNotExist):
		return http.StatusNotFound
	case errors.Is(err, ErrChannelPendingRemove):
		return http.StatusConflict
	default:
		return http.StatusBadRequest
	}
}

var channelIDPattern = regexp.MustCompile(`^[a-z][a-z0-9.-]*$`)

// ValidateChannelID applies Fabric's channel name rules: lowercase letters,
// digits, dots and dashes, starting with a letter, shorter than 250 characters.
func ValidateChannelID(id string) error {
	switch {
	case id == "":
		return errors.New("channel ID illegal, cannot be empty")
	case len(id) > 249:
		return fmt.Errorf("channel ID illegal, cannot be longer than 249")
	case !channelIDPattern.MatchString(id):
		return fmt.Errorf("'%s' contains illegal characters", id)
	}
	return nil
}

func negotiateContentType(r *http.Request) (string, error) {
	accept := r.Header.Get("Accept")
	if accept == "" {
		return "application/json", nil
	}
	for _, opt := range strings.Split(accept, ",") {
		if strings.Contains(opt, "application/json") || strings.Contains(opt, "application/*") || strings.Contains(opt, "*/*") {
			return "application/json", nil
		}
	}
	return "", errors.New("response Content-Type is application/json only")
}

func (h *Handler) send(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		h.log.Debug("write response", "err", err)
	}
}

func (h *Handler) sendError(w http.ResponseWriter, code int, err error) {
	h.log.Debug("participation request failed", "status", code, "err", err)
	h.send(w, code, errorResponse{Error: err.Error()})
}

func (h *Handler) sendNotAllowed(w http.ResponseWriter, err error, allow ...string) {
	w.Header().Set("Allow", strings.Join(allow, ", "))
	h.sendError(w, http.StatusMethodNotAllowed, err)
}
