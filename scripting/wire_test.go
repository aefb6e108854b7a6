package scripting

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// frames writes one frame per body, as the other end of a pipe would.
func frames(t *testing.T, bodies ...[]byte) *bytes.Buffer {
	t.Helper()
	var stream bytes.Buffer
	for _, b := range bodies {
		require.NoError(t, writeFrame(&stream, b))
	}
	return &stream
}

func stringsBody(typ byte, ss ...string) []byte {
	e := encoder{buf: []byte{typ}}
	for _, s := range ss {
		e.string(s)
	}
	return e.buf
}

// A decoder keeps reading its own frame whatever is read after it: both
// ends of the protocol (workerServer.in, worker.out) read a new frame while
// an older one may still be decoded (the worker reads host replies between
// the records of a page).
func TestFrameReaderDecoderOwnsItsFrame(t *testing.T) {
	t.Parallel()
	page := stringsBody(msgBatch, "first", strings.Repeat("b", 300))
	// Larger than what the page's decoder has read when it comes, and
	// small enough to fit the page's buffer.
	reply := stringsBody(msgHostReply, strings.Repeat("x", 100))
	small := stringsBody(msgHostReply, "y")
	fr := frameReader{r: bufio.NewReader(frames(t, page, reply, small, small))}

	typ, pageDec, err := fr.read()
	require.NoError(t, err)
	require.Equal(t, msgBatch, typ)
	pageFrame := pageDec.frame
	require.Equal(t, "first", pageDec.string())

	typ, replyDec, err := fr.read()
	require.NoError(t, err)
	require.Equal(t, msgHostReply, typ)
	replyFrame := replyDec.frame
	require.Equal(t, strings.Repeat("x", 100), replyDec.string())
	require.Equal(t, strings.Repeat("b", 300), pageDec.string(), "the reply overwrote the page")
	require.NoError(t, pageDec.err)

	// A released frame is reused by the next read, and its decoder reads
	// nothing more rather than the next frame's bytes.
	fr.release(replyDec)
	assert.Empty(t, replyDec.string())
	assert.ErrorIs(t, replyDec.err, errShort)
	_, next, err := fr.read()
	require.NoError(t, err)
	assert.Same(t, &replyFrame[0], &next.frame[0], "the released buffer is reused")
	require.Equal(t, "y", next.string())

	// Releasing twice is harmless; of two free buffers the larger stays.
	fr.release(next)
	fr.release(next)
	fr.release(pageDec)
	assert.Same(t, &pageFrame[0], &fr.free[:1][0])
	_, last, err := fr.read()
	require.NoError(t, err)
	require.Equal(t, "y", last.string())
}

func TestFrameReaderErrors(t *testing.T) {
	t.Parallel()
	fr := frameReader{r: frames(t, []byte{})}
	_, _, err := fr.read()
	require.EqualError(t, err, "worker protocol: empty frame")

	cut := frames(t, stringsBody(msgHostReply, "abc"))
	cut.Truncate(cut.Len() - 1)
	fr = frameReader{r: cut}
	_, _, err = fr.read()
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}
