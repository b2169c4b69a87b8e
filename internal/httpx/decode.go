package httpx

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"unicode/utf8"
)

// DecodeJSON decodes data, which must hold exactly one JSON object in
// valid UTF-8, into v, a pointer to a flat struct: the strict decoder for
// every JSON input. Each key must be one of the struct's JSON field names
// spelt exactly (encoding/json alone matches them case-insensitively, so
// {"USERNAME":...} would pass) and may appear once (encoding/json alone
// keeps the last of repeated keys); values must have the fields' types,
// and nothing may follow the object. Anything else is a 400 that says what
// is wrong. An empty body is told to send example ("" for a generic hint).
func DecodeJSON(data []byte, v any, example string) *Error {
	if !utf8.Valid(data) {
		return BadRequest("body is not valid UTF-8")
	}
	if e := checkJSONKeys(data, fieldsOf(reflect.TypeOf(v))); e != nil {
		return e
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err, example)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return BadRequest("body must hold a single JSON object")
	}
	return nil
}

// jsonError says what is wrong with a body that encoding/json refused.
func jsonError(err error, example string) *Error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		if example == "" {
			example = "a JSON object"
		}
		return BadRequest("body is empty; send %s", example)
	case errors.As(err, &syntax):
		return BadRequest("malformed JSON at byte %d", syntax.Offset)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return BadRequest("malformed JSON: unexpected end of body")
	case errors.As(err, &typ):
		if typ.Field == "" {
			return BadRequest("body must be a JSON object")
		}
		return BadRequest("%s must be %s", typ.Field, jsonKind(typ.Type))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return BadRequest("unknown field %s", Truncate(strings.TrimPrefix(err.Error(), "json: unknown field "), 40))
	default:
		return BadRequest("malformed JSON")
	}
}

// checkJSONKeys walks the top-level keys of the object in data and refuses
// any that is not in fields (compared exactly) or that appears twice.
// Anything that is not a well-formed object is left to the decoder, which
// says what is wrong with it.
func checkJSONKeys(data []byte, fields map[string]int) *Error {
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	seen := make(map[string]bool, len(fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil
		}
		key, _ := tok.(string)
		_, known := fields[key]
		switch {
		case !known:
			return BadRequest("unknown field %q", Truncate(key, 40))
		case seen[key]:
			return BadRequest("field %q given more than once", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return nil
		}
	}
	return nil
}

// DecodeForm decodes data, a URL-encoded form, into v, a pointer to a flat
// struct of string fields: each form field must be one of the struct's
// JSON field names, at most once, in valid UTF-8. Anything else is a 400.
func DecodeForm(data []byte, v any) *Error {
	form, err := url.ParseQuery(string(data))
	if err != nil {
		return BadRequest("malformed form body")
	}
	fields := fieldsOf(reflect.TypeOf(v))
	for k, vals := range form {
		if _, ok := fields[k]; !ok {
			return BadRequest("unknown field %q", Truncate(k, 40))
		}
		if len(vals) > 1 {
			return BadRequest("field %q given more than once", k)
		}
		if !utf8.ValidString(vals[0]) {
			return BadRequest("body is not valid UTF-8")
		}
	}
	sv := reflect.ValueOf(v).Elem()
	for k, vals := range form {
		f := sv.Field(fields[k])
		if f.Kind() != reflect.String {
			return BadRequest("%s cannot be sent in a form; send JSON", k)
		}
		f.SetString(vals[0])
	}
	return nil
}

// fieldCache caches fieldsOf by type.
var fieldCache sync.Map // reflect.Type -> map[string]int

// fieldsOf returns the JSON names of the exported fields of the struct
// that t (a pointer to a struct) points to, each with the field's index:
// the name in its json tag, or the Go name when the tag gives none.
func fieldsOf(t reflect.Type) map[string]int {
	if m, ok := fieldCache.Load(t); ok {
		return m.(map[string]int)
	}
	st := t
	for st.Kind() == reflect.Pointer {
		st = st.Elem()
	}
	names := map[string]int{}
	if st.Kind() == reflect.Struct {
		for i := range st.NumField() {
			f := st.Field(i)
			tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			switch {
			case !f.IsExported() || tag == "-":
			case tag != "":
				names[tag] = i
			default:
				names[f.Name] = i
			}
		}
	}
	fieldCache.Store(t, names)
	return names
}

// jsonKind names the JSON type a Go type decodes from, for error messages.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}
