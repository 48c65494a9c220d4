package campaigns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// maxRecord is the most one CSV record of an import may take, quoted line breaks included: far above a real row
// with every field at its limit (see the field limits in subscribers.go), it stops a stray " from swallowing the
// rest of a file into one field, and a 50 MB line from being held in memory.
const maxRecord = 64 << 10

// csvReader reads CSV the way encoding/csv does without LazyQuotes (RFC 4180: a field may be quoted, a quoted
// field may hold commas, "" and line breaks), with one difference that matters for imports: a broken record costs
// only its first line. encoding/csv, given one unbalanced quote, reads on to the next quote, often the end of the
// file, and reports the line where it gave up; csvReader reports the line where the record started and goes on
// with the line after it, so every other row of the file is still imported.
type csvReader struct {
	br       *bufio.Reader
	progress func(int) // told the bytes of every line read
	ahead    []rawLine // lines read and not yet consumed by a record, oldest first
	read     int       // lines read from br
	done     bool      // br has ended
}

// rawLine is one physical line of the input.
type rawLine struct {
	n    int    // its number, from 1
	b    []byte // without its line break; "\r\n" counts as one, as in encoding/csv
	nl   bool   // ended with a line break (only the last line of a file may not)
	long bool   // longer than maxRecord: b is empty, the line was skipped unread
}

// csvError is a record that could not be read. The reader has skipped its first line only.
type csvError struct {
	line int
	msg  string
}

func (e *csvError) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// csvRecord is a record read, with the lines it spans.
type csvRecord struct {
	fields      []string
	first, last int
}

func newCSVReader(r io.Reader, progress func(int)) *csvReader {
	return &csvReader{br: bufio.NewReaderSize(r, 64<<10), progress: progress}
}

// Next returns the next record, a *csvError for a record that cannot be read (call Next again for the rest), or
// the error of the underlying reader; io.EOF at the end. Empty lines are skipped, as encoding/csv does.
func (r *csvReader) Next() (csvRecord, error) {
	for {
		first, err := r.line(0)
		if err != nil {
			return csvRecord{}, err
		}
		if first.long {
			r.drop(1)
			return csvRecord{}, &csvError{first.n, fmt.Sprintf("longer than %d KiB; not read", maxRecord>>10)}
		}
		if len(first.b) == 0 {
			r.drop(1)
			continue
		}
		rec, lines, err := r.parse()
		var ce *csvError
		if errors.As(err, &ce) {
			// Only the first line: the lines after it may be rows of their own that a stray quote pulled in.
			// Reading them again costs little: a record runs on past a line only while an odd number of quotes
			// is open, so a look-ahead ends at the next line with an odd number of quotes, and each line is read
			// again at most once.
			if lines > 1 {
				ce.msg += fmt.Sprintf("; only line %d is skipped, the lines after it are read as rows of their own", ce.line)
			}
			r.drop(1)
			return csvRecord{}, err
		}
		if err != nil {
			return csvRecord{}, err
		}
		r.drop(lines)
		return rec, nil
	}
}

// parse reads the record that starts at the first line ahead and returns it with the number of lines it spans.
func (r *csvReader) parse() (csvRecord, int, error) {
	const (
		fieldStart = iota
		unquoted
		quoted
		quoteInQuoted // a " inside a quoted field: the end of the field, or the first of ""
	)
	var (
		fields []string
		field  []byte
		state  = fieldStart
		size   int
	)
	start := r.ahead[0].n
	// A broken record returns the lines it looked at, for Next to skip one or all of them.
	broken := func(lines int, format string, args ...any) (csvRecord, int, error) {
		return csvRecord{}, lines, &csvError{start, fmt.Sprintf(format, args...)}
	}
	const unclosed = "field %d opens a quote (\") that is not closed %s"
	for i := 0; ; i++ {
		l, err := r.line(i)
		if err == io.EOF {
			return broken(i, unclosed, len(fields)+1, "by the end of the file")
		}
		if err != nil {
			return csvRecord{}, 0, err
		}
		if size += len(l.b) + 1; l.long || size > maxRecord {
			return broken(i+1, unclosed, len(fields)+1, fmt.Sprintf("within %d KiB", maxRecord>>10))
		}
		on := "" // where a problem is when it is not on the record's first line
		if l.n != start {
			on = fmt.Sprintf(" on line %d", l.n)
		}
		for j, c := range l.b {
			switch state {
			case fieldStart:
				switch c {
				case '"':
					state = quoted
				case ',':
					fields = append(fields, "")
				default:
					field, state = append(field, c), unquoted
				}
			case unquoted:
				switch c {
				case ',':
					fields, field, state = append(fields, string(field)), field[:0], fieldStart
				case '"':
					return broken(i+1, `field %d has a " inside it%s (quote the whole field and double the " inside: "say ""hi""")`, len(fields)+1, on)
				default:
					field = append(field, c)
				}
			case quoted:
				if c == '"' {
					state = quoteInQuoted
				} else {
					field = append(field, c)
				}
			case quoteInQuoted:
				switch c {
				case '"':
					field, state = append(field, '"'), quoted
				case ',':
					fields, field, state = append(fields, string(field)), field[:0], fieldStart
				default:
					next, _ := utf8.DecodeRune(l.b[j:]) // the character, not its first byte, for the message
					if l.n == start {
						return broken(i+1, `field %d: the " that closes it is followed by %q, not a comma or the end of the line (double a " inside a quoted field: "say ""hi""")`, len(fields)+1, next)
					}
					return broken(i+1, unclosed, len(fields)+1, fmt.Sprintf("properly (the next \", on line %d, is followed by %q)", l.n, next))
				}
			}
		}
		if state == quoted {
			if !l.nl {
				return broken(i+1, unclosed, len(fields)+1, "by the end of the file")
			}
			field = append(field, '\n')
			continue
		}
		fields = append(fields, string(field))
		return csvRecord{fields: fields, first: start, last: l.n}, i + 1, nil
	}
}

// line returns the i-th line ahead, reading it if need be; io.EOF when the input has fewer.
func (r *csvReader) line(i int) (rawLine, error) {
	for len(r.ahead) <= i {
		if r.done {
			return rawLine{}, io.EOF
		}
		l, err := r.readLine()
		if err == io.EOF {
			r.done = true
			continue
		}
		if err != nil {
			return rawLine{}, err
		}
		r.ahead = append(r.ahead, l)
	}
	return r.ahead[i], nil
}

func (r *csvReader) drop(n int) {
	r.ahead = r.ahead[:copy(r.ahead, r.ahead[n:])]
}

// readLine reads one physical line, keeping at most maxRecord bytes of it.
func (r *csvReader) readLine() (rawLine, error) {
	var b []byte
	total, long := 0, false
	for {
		chunk, err := r.br.ReadSlice('\n')
		total += len(chunk)
		if !long {
			if len(b)+len(chunk) > maxRecord+2 { // +2: the line break is not part of the record
				b, long = nil, true
			} else {
				b = append(b, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil && err != io.EOF {
			return rawLine{}, err
		}
		if total == 0 {
			return rawLine{}, io.EOF
		}
		r.read++
		l := rawLine{n: r.read, long: long}
		if r.read == 1 {
			if bytes.HasPrefix(b, []byte("\xEF\xBB\xBF")) { // a byte order mark, as spreadsheets write
				b, total = b[3:], total-3
			}
		}
		if r.progress != nil {
			r.progress(total)
		}
		switch {
		case bytes.HasSuffix(b, []byte("\r\n")):
			l.b, l.nl = b[:len(b)-2], true
		case bytes.HasSuffix(b, []byte("\n")):
			l.b, l.nl = b[:len(b)-1], true
		case err == io.EOF && bytes.HasSuffix(b, []byte("\r")):
			l.b = b[:len(b)-1] // as encoding/csv: a \r at the very end is dropped
		default:
			l.b = b
		}
		if long {
			l.nl = true // whether it had one does not matter: nothing of it is read
		}
		return l, nil
	}
}
