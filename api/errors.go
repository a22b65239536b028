package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// apiError is an error answered in WordPress's REST shape:
// {"code": …, "message": …, "data": {"status": N, …}}.
type apiError struct {
	Status  int
	Code    string
	Message string
	// Params, when set, is data.params: a map of parameter name to
	// problem for rest_invalid_param, a list of names for
	// rest_missing_callback_param.
	Params any
	// Header holds extra response headers, such as WWW-Authenticate.
	Header http.Header
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

// body returns the error as the JSON object WordPress sends.
func (e *apiError) body() errorBody {
	return errorBody{Code: e.Code, Message: e.Message, Data: errorData{Status: e.Status, Params: e.Params}}
}

type errorBody struct {
	Code    string    `json:"code"`
	Message string    `json:"message"`
	Data    errorData `json:"data"`
}

type errorData struct {
	Status int `json:"status"`
	Params any `json:"params,omitempty"`
}

func newError(status int, code, format string, args ...any) *apiError {
	return &apiError{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Errors WordPress and WooCommerce answer with, by name.
var (
	errNoRoute = newError(http.StatusNotFound, "rest_no_route", "No route was found matching the URL and request method.")
	errTooBig  = newError(http.StatusRequestEntityTooLarge, "woocommerce_rest_request_entity_too_large",
		"The request body is larger than %d bytes.", maxBodyBytes)
)

func errInvalidID(status int) *apiError {
	if status == http.StatusNotFound {
		return newError(status, "woocommerce_rest_shop_webhook_invalid_id", "Invalid ID.")
	}
	return newError(http.StatusBadRequest, "woocommerce_rest_shop_webhook_invalid_id", "ID is invalid.")
}

func errAuth(message string) *apiError {
	return newError(http.StatusUnauthorized, "woocommerce_rest_authentication_error", "%s", message)
}

// invalidParams is rest_invalid_param for the given problems, keyed by
// parameter name.
func invalidParams(problems map[string]string) *apiError {
	names := sortedKeys(problems)
	return &apiError{
		Status:  http.StatusBadRequest,
		Code:    "rest_invalid_param",
		Message: "Invalid parameter(s): " + strings.Join(names, ", "),
		Params:  problems,
	}
}

func missingParams(names []string) *apiError {
	return &apiError{
		Status:  http.StatusBadRequest,
		Code:    "rest_missing_callback_param",
		Message: "Missing parameter(s): " + strings.Join(names, ", "),
		Params:  names,
	}
}

// writeJSON answers v as JSON with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only types of this package are encoded; this cannot happen.
		status, b = http.StatusInternalServerError, []byte(`{"code":"rest_error","message":"Cannot encode the response.","data":{"status":500}}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=UTF-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, e *apiError) {
	for k, vs := range e.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	writeJSON(w, e.Status, e.body())
}
