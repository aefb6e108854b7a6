package scripting

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"time"
)

// The worker protocol's encoding: frames of a 4-byte big-endian length and
// a body; bodies are built from varints, strings and tagged engine values.
// It is exact for every engine value (json.Number keeps its digits, int64
// stays int64, time.Time keeps its instant and offset) and cheaper than gob
// or JSON for the small records a page carries.

const maxFrame = 1 << 30

const (
	tagNil byte = iota
	tagFalse
	tagTrue
	tagInt
	tagUint
	tagFloat
	tagString
	tagNumber
	tagTime
	tagBytes
	tagMap
	tagList
	tagDuration
)

type encoder struct {
	buf []byte
}

func (e *encoder) byte(b byte)      { e.buf = append(e.buf, b) }
func (e *encoder) uvarint(n uint64) { e.buf = binary.AppendUvarint(e.buf, n) }
func (e *encoder) varint(n int64)   { e.buf = binary.AppendVarint(e.buf, n) }
func (e *encoder) bool(b bool) {
	if b {
		e.byte(1)
	} else {
		e.byte(0)
	}
}
func (e *encoder) string(s string) { e.uvarint(uint64(len(s))); e.buf = append(e.buf, s...) }

// record writes a map of engine values; nil stays nil.
func (e *encoder) record(m map[string]any, name string) error {
	if m == nil {
		e.byte(tagNil)
		return nil
	}
	return e.value(m, name)
}

// value writes one engine value; an unsupported type is an error naming
// the type and where it sits (under path).
func (e *encoder) value(v any, path string) error {
	if err := e.val(v, 0); err != nil {
		return err.at(path)
	}
	return nil
}

func (e *encoder) val(v any, depth int) *convError {
	if depth > maxDepth {
		return convErrorf("nested deeper than %d levels", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		e.byte(tagNil)
	case bool:
		if x {
			e.byte(tagTrue)
		} else {
			e.byte(tagFalse)
		}
	case int64:
		e.byte(tagInt)
		e.varint(x)
	case int:
		e.byte(tagInt)
		e.varint(int64(x))
	case int32:
		e.byte(tagInt)
		e.varint(int64(x))
	case int16:
		e.byte(tagInt)
		e.varint(int64(x))
	case int8:
		e.byte(tagInt)
		e.varint(int64(x))
	case uint64:
		e.byte(tagUint)
		e.uvarint(x)
	case uint:
		e.byte(tagUint)
		e.uvarint(uint64(x))
	case uint32:
		e.byte(tagUint)
		e.uvarint(uint64(x))
	case uint16:
		e.byte(tagUint)
		e.uvarint(uint64(x))
	case uint8:
		e.byte(tagUint)
		e.uvarint(uint64(x))
	case float64:
		e.byte(tagFloat)
		e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(x))
	case float32:
		e.byte(tagFloat)
		e.buf = binary.BigEndian.AppendUint64(e.buf, math.Float64bits(float64(x)))
	case string:
		e.byte(tagString)
		e.string(x)
	case json.Number:
		e.byte(tagNumber)
		e.string(string(x))
	case Decimal:
		e.byte(tagNumber)
		e.string(x.s)
	case time.Time:
		e.byte(tagTime)
		var tb [16]byte
		b, err := x.AppendBinary(tb[:0])
		if err != nil {
			return convErrorf("%s", err)
		}
		e.uvarint(uint64(len(b)))
		e.buf = append(e.buf, b...)
	case time.Duration:
		e.byte(tagDuration)
		e.varint(int64(x))
	case []byte:
		e.byte(tagBytes)
		e.uvarint(uint64(len(x)))
		e.buf = append(e.buf, x...)
	case map[string]any:
		e.byte(tagMap)
		e.uvarint(uint64(len(x)))
		for k, el := range x {
			e.string(k)
			if err := e.val(el, depth+1); err != nil {
				return err.key(k)
			}
		}
	case []any:
		e.byte(tagList)
		e.uvarint(uint64(len(x)))
		for i, el := range x {
			if err := e.val(el, depth+1); err != nil {
				return err.index(i)
			}
		}
	default:
		return e.reflectValue(v, depth)
	}
	return nil
}

func (e *encoder) reflectValue(v any, depth int) *convError {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		e.byte(tagList)
		e.uvarint(uint64(rv.Len()))
		for i := range rv.Len() {
			if err := e.val(rv.Index(i).Interface(), depth+1); err != nil {
				return err.index(i)
			}
		}
		return nil
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			break
		}
		e.byte(tagMap)
		e.uvarint(uint64(rv.Len()))
		iter := rv.MapRange()
		for iter.Next() {
			k := iter.Key().String()
			e.string(k)
			if err := e.val(iter.Value().Interface(), depth+1); err != nil {
				return err.key(k)
			}
		}
		return nil
	case reflect.Pointer:
		if rv.IsNil() {
			e.byte(tagNil)
			return nil
		}
		return e.val(rv.Elem().Interface(), depth)
	}
	return convErrorf("unsupported Go type %T", v)
}

var errShort = errors.New("worker protocol: message cut short")

type decoder struct {
	buf []byte
	err error
	// frame is the whole buffer buf reads from, when a frameReader lent
	// it: release gives it back (see frameReader).
	frame []byte
}

func (d *decoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
	d.buf = nil
}

func (d *decoder) byte() byte {
	if len(d.buf) < 1 {
		d.fail(errShort)
		return 0
	}
	b := d.buf[0]
	d.buf = d.buf[1:]
	return b
}

func (d *decoder) bool() bool { return d.byte() == 1 }

func (d *decoder) uvarint() uint64 {
	n, k := binary.Uvarint(d.buf)
	if k <= 0 {
		d.fail(errShort)
		return 0
	}
	d.buf = d.buf[k:]
	return n
}

func (d *decoder) varint() int64 {
	n, k := binary.Varint(d.buf)
	if k <= 0 {
		d.fail(errShort)
		return 0
	}
	d.buf = d.buf[k:]
	return n
}

func (d *decoder) int() int { return int(d.varint()) }

func (d *decoder) string() string {
	n := d.uvarint()
	if uint64(len(d.buf)) < n {
		d.fail(errShort)
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

// bytes returns the next length-prefixed bytes, aliasing the frame: copy
// what you keep, the frame is reused once its decoder is released.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if uint64(len(d.buf)) < n {
		d.fail(errShort)
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

func (d *decoder) record() map[string]any {
	v := d.value(0)
	m, ok := v.(map[string]any)
	if v != nil && !ok {
		d.fail(fmt.Errorf("worker protocol: want a record, got %T", v))
	}
	return m
}

// payload reads a record that came from the mapped record orig: a
// top-level value equal to orig's reuses orig's Go value (no allocation
// for the fields a transform leaves alone).
func (d *decoder) payload(orig map[string]any) map[string]any {
	if len(d.buf) == 0 || d.buf[0] != tagMap || len(orig) == 0 {
		return d.record()
	}
	d.byte()
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.fail(errShort)
		return nil
	}
	m := make(map[string]any, n)
	for range n {
		k := d.string()
		if o, ok := orig[k]; ok && d.same(o) {
			m[k] = o
			continue
		}
		m[k] = d.value(1)
	}
	return m
}

// same reports whether the next value is the scalar o, and if so skips it.
func (d *decoder) same(o any) bool {
	if len(d.buf) == 0 {
		return false
	}
	rest := d.buf[1:]
	switch d.buf[0] {
	case tagString:
		s, ok := o.(string)
		if !ok {
			return false
		}
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n || string(rest[k:k+int(n)]) != s {
			return false
		}
		d.buf = rest[k+int(n):]
		return true
	case tagInt:
		i, ok := o.(int64)
		if !ok {
			return false
		}
		v, k := binary.Varint(rest)
		if k <= 0 || v != i {
			return false
		}
		d.buf = rest[k:]
		return true
	case tagNumber:
		num, ok := o.(json.Number)
		if !ok {
			return false
		}
		n, k := binary.Uvarint(rest)
		if k <= 0 || uint64(len(rest)-k) < n || string(rest[k:k+int(n)]) != string(num) {
			return false
		}
		d.buf = rest[k+int(n):]
		return true
	}
	return false
}

func (d *decoder) value(depth int) any {
	if depth > maxDepth+2 {
		d.fail(errors.New("worker protocol: value nested too deeply"))
		return nil
	}
	switch tag := d.byte(); tag {
	case tagNil:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagInt:
		return d.varint()
	case tagUint:
		return d.uvarint()
	case tagFloat:
		if len(d.buf) < 8 {
			d.fail(errShort)
			return nil
		}
		f := math.Float64frombits(binary.BigEndian.Uint64(d.buf))
		d.buf = d.buf[8:]
		return f
	case tagString:
		return d.string()
	case tagNumber:
		return json.Number(d.string())
	case tagTime:
		var t time.Time
		if err := t.UnmarshalBinary(d.bytes()); err != nil {
			d.fail(fmt.Errorf("worker protocol: %w", err))
		}
		return t
	case tagDuration:
		return time.Duration(d.varint())
	case tagBytes:
		return bytes.Clone(d.bytes())
	case tagMap:
		n := d.uvarint()
		if n > uint64(len(d.buf)) {
			d.fail(errShort)
			return nil
		}
		m := make(map[string]any, n)
		for range n {
			k := d.string()
			m[k] = d.value(depth + 1)
		}
		return m
	case tagList:
		n := d.uvarint()
		if n > uint64(len(d.buf)) {
			d.fail(errShort)
			return nil
		}
		l := make([]any, n)
		for i := range l {
			l[i] = d.value(depth + 1)
		}
		return l
	default:
		d.fail(fmt.Errorf("worker protocol: unknown value tag %d", tag))
		return nil
	}
}

// writeFrame writes one length-prefixed frame.
func writeFrame(w io.Writer, body []byte) error {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], uint32(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

// readFrame reads one frame into buf (grown as needed) and returns it.
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame {
		return nil, fmt.Errorf("worker protocol: frame of %d bytes is too large", n)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// frameReader reads the frames of one pipe. Each frame's decoder owns the
// frame's buffer: a decoder may still be reading its frame when another
// frame comes in (a worker decoding a page reads host replies between two
// records), so no read may write into a buffer a decoder holds. A buffer
// is reused only after release gives it back; a decoder never released
// just leaves its buffer to the garbage collector.
type frameReader struct {
	r    io.Reader
	free []byte // a buffer no decoder reads from, for the next frame
}

// read reads the next frame and returns its message type and a decoder
// over the rest, which owns the frame until released.
func (f *frameReader) read() (byte, *decoder, error) {
	buf := f.free
	f.free = nil
	frame, err := readFrame(f.r, buf)
	if err != nil {
		return 0, nil, err
	}
	if len(frame) == 0 {
		return 0, nil, errors.New("worker protocol: empty frame")
	}
	return frame[0], &decoder{buf: frame[1:], frame: frame}, nil
}

// release gives d's frame back for reuse by a later read; d must not be
// used after (it reads nothing more: its buffer is gone). Of two free
// buffers the larger is kept, as readFrame keeps one buffer that only
// grows.
func (f *frameReader) release(d *decoder) {
	if d == nil || d.frame == nil {
		return
	}
	if cap(d.frame) > cap(f.free) {
		f.free = d.frame[:0]
	}
	d.frame, d.buf = nil, nil
}
