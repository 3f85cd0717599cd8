package participation

import (
	"bytes"
	"context"
	"errors"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"testing"

	cb "github.com/hyperledger/fabric-protos-go-apiv2/common"
)

// acceptNothing is a registrar that refuses every join: the fuzz target is the
// request parsing in front of it.
type acceptNothing struct{ joins int }

func (a *acceptNothing) Join(_ context.Context, b *cb.Block) (ChannelInfo, error) {
	a.joins++
	if b == nil {
		return ChannelInfo{}, errors.New("nil block reached the registrar")
	}
	return ChannelInfo{}, errors.New("refused")
}
func (a *acceptNothing) Info(string) (ChannelInfo, error)     { return ChannelInfo{}, ErrChannelNotExist }
func (a *acceptNothing) List() []string                       { return nil }
func (a *acceptNothing) Remove(context.Context, string) error { return ErrChannelNotExist }

// FuzzJoinBody posts arbitrary bodies — as the config-block file of a
// multipart form, and as a raw body with a multipart content type — to the
// join endpoint: the answer is always a JSON error or success, never a panic
// or a 5xx from the parser.
func FuzzJoinBody(f *testing.F) {
	f.Add([]byte{}, "multipart/form-data; boundary=x")
	f.Add([]byte("--x\r\nContent-Disposition: form-data; name=\"config-block\"; filename=\"b\"\r\n\r\n\x0a\x00\r\n--x--\r\n"), "multipart/form-data; boundary=x")
	f.Add([]byte{0x0a, 0x02, 0x08, 0x01}, "application/octet-stream")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		reg := &acceptNothing{}
		h := New(reg, nil)
		for _, req := range []*http.Request{rawJoin(body, contentType), formJoin(t, body)} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code >= 500 && rec.Code != http.StatusServiceUnavailable && reg.joins == 0 {
				t.Fatalf("status %d before reaching the registrar: %s", rec.Code, rec.Body)
			}
			if rec.Code != http.StatusCreated && !bytes.Contains(rec.Body.Bytes(), []byte(`"error"`)) {
				t.Fatalf("status %d without a JSON error: %q", rec.Code, rec.Body)
			}
		}
	})
}

func rawJoin(body []byte, contentType string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, URLBaseV1Channels, bytes.NewReader(body))
	r.Header.Set("Content-Type", contentType)
	return r
}

func formJoin(t *testing.T, block []byte) *http.Request {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("config-block", "config.block")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(block)
	mw.Close()
	r := httptest.NewRequest(http.MethodPost, URLBaseV1Channels, &buf)
	r.Header.Set("Content-Type", mw.FormDataContentType())
	return r
}
