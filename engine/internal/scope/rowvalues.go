package scope

import (
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// How a column's values become record values (see values.go): pgx decodes
// the native types below faithfully in binary; json and jsonb are decoded
// with exact numbers; arrays of native or json types become nested lists
// whatever their dimensions; every other type (interval, money, ranges, bit
// strings, xml, tsvector, enums, user types …) arrives in PostgreSQL's own
// text form and is sent as that string. A value that still cannot be
// decoded fails its record, naming the column: never the run.

// nativeOIDs are the scalar types pgx decodes faithfully in binary.
func nativeOIDs() []uint32 {
	return []uint32{
		pgtype.BoolOID, pgtype.Int2OID, pgtype.Int4OID, pgtype.Int8OID,
		pgtype.Float4OID, pgtype.Float8OID, pgtype.NumericOID,
		pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID,
		pgtype.UUIDOID, pgtype.TimestamptzOID, pgtype.TimestampOID, pgtype.DateOID,
		pgtype.ByteaOID, pgtype.InetOID, pgtype.CIDROID, pgtype.OIDOID,
	}
}

// arrayElemOIDs are the element types of the arrays read as nested lists.
func arrayElemOIDs() []uint32 {
	return append(nativeOIDs(), pgtype.JSONOID, pgtype.JSONBOID)
}

// ValueFormats asks for binary results where pgx decodes them faithfully
// and for text for every other type (the default for OIDs not listed), so
// that no value arrives as a Go type Ferry does not know. json, jsonb and
// their arrays come as text: Ferry decodes the JSON itself, numbers exact.
func ValueFormats(m *pgtype.Map) pgx.QueryResultFormatsByOID {
	formats := pgx.QueryResultFormatsByOID{}
	for _, oid := range nativeOIDs() {
		formats[oid] = pgx.BinaryFormatCode
		if t, ok := m.TypeForOID(oid); ok {
			if at, ok := m.TypeForName("_" + t.Name); ok {
				formats[at.OID] = pgx.BinaryFormatCode
			}
		}
	}
	return formats
}

// columnKind says how one result column is decoded.
type columnKind int

const (
	kindText   columnKind = iota // PostgreSQL's text form, as a string
	kindNative                   // pgx's binary decoding, then normalize
	kindJSON                     // json/jsonb text, numbers exact
	kindArray                    // an array of native or json elements
)

// RowDecoder decodes the rows of one result shape.
type RowDecoder struct {
	m     *pgtype.Map
	cols  []pgconn.FieldDescription
	kinds []columnKind
	elems []uint32 // element type of array columns
	types []pgtype.Codec
}

func NewRowDecoder(m *pgtype.Map, fields []pgconn.FieldDescription) *RowDecoder {
	d := &RowDecoder{m: m, cols: fields, kinds: make([]columnKind, len(fields)),
		elems: make([]uint32, len(fields)), types: make([]pgtype.Codec, len(fields))}
	native := map[uint32]bool{}
	for _, oid := range nativeOIDs() {
		native[oid] = true
	}
	for i, f := range fields {
		oid := f.DataTypeOID
		t, known := m.TypeForOID(oid)
		switch {
		case oid == pgtype.JSONOID || oid == pgtype.JSONBOID:
			d.kinds[i] = kindJSON
		case native[oid] && known:
			d.kinds[i], d.types[i] = kindNative, t.Codec
		case known:
			if ac, ok := t.Codec.(*pgtype.ArrayCodec); ok && (native[ac.ElementType.OID] || ac.ElementType.OID == pgtype.JSONOID || ac.ElementType.OID == pgtype.JSONBOID) {
				d.kinds[i], d.elems[i] = kindArray, ac.ElementType.OID
			}
		}
	}
	return d
}

// Value decodes column i's raw value.
func (d *RowDecoder) Value(i int, raw []byte) (any, error) {
	if raw == nil {
		return nil, nil
	}
	f := &d.cols[i]
	switch d.kinds[i] {
	case kindJSON:
		return DecodeJSON(raw)
	case kindNative:
		v, err := d.types[i].DecodeValue(d.m, f.DataTypeOID, f.Format, raw)
		if err != nil {
			return nil, err
		}
		return normalize(f.DataTypeOID, v)
	case kindArray:
		return d.array(f, d.elems[i], raw)
	}
	if f.Format != pgx.TextFormatCode {
		return nil, fmt.Errorf("type OID %d arrived in binary, which Ferry cannot read; cast the column to text in the query", f.DataTypeOID)
	}
	return string(raw), nil
}

// array returns an array as nested lists, one level per dimension (an
// empty array is an empty list).
func (d *RowDecoder) array(f *pgconn.FieldDescription, elem uint32, raw []byte) (any, error) {
	var flat []any
	var dims []pgtype.ArrayDimension
	if elem == pgtype.JSONOID || elem == pgtype.JSONBOID {
		var arr pgtype.Array[*string]
		if err := d.m.Scan(f.DataTypeOID, f.Format, raw, &arr); err != nil {
			return nil, err
		}
		flat = make([]any, len(arr.Elements))
		for i, s := range arr.Elements {
			if s == nil {
				continue
			}
			v, err := DecodeJSON([]byte(*s))
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i+1, err)
			}
			flat[i] = v
		}
		dims = arr.Dims
	} else {
		var arr pgtype.Array[any]
		if err := d.m.Scan(f.DataTypeOID, f.Format, raw, &arr); err != nil {
			return nil, err
		}
		flat = arr.Elements
		for i, e := range flat {
			if e == nil {
				continue
			}
			v, err := normalize(elem, e)
			if err != nil {
				return nil, fmt.Errorf("element %d: %w", i+1, err)
			}
			flat[i] = v
		}
		dims = arr.Dims
	}
	if len(dims) <= 1 {
		return flat, nil
	}
	nested, _ := nest(flat, dims)
	return nested, nil
}

// nest shapes the flat elements of a multi-dimensional array into lists of
// lists, consuming them in order.
func nest(flat []any, dims []pgtype.ArrayDimension) ([]any, []any) {
	n := int(dims[0].Length)
	out := make([]any, n)
	if len(dims) == 1 {
		copy(out, flat[:n])
		return out, flat[n:]
	}
	for i := range out {
		out[i], flat = nest(flat, dims[1:])
	}
	return out, flat
}
