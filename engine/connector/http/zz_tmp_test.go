package httptarget_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ferry-sync/ferry/engine/connector"
	"github.com/ferry-sync/ferry/engine/connector/crmtest"
	httptarget "github.com/ferry-sync/ferry/engine/connector/http"
)

func TestMain(m *testing.M) {
	if os.Getenv("ZZ_SERVE") == "1" {
		if p := os.Getenv("ZZ_PROF"); p != "" {
			f, _ := os.Create(p)
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
		lat, _ := time.ParseDuration(os.Getenv("ZZ_LAT"))
		srv, err := crmtest.NewServer(crmtest.Options{Token: token, Latency: lat, Objects: map[string]crmtest.Object{"partners": {Required: []string{"name"}, Unique: []string{"vat"}}}})
		if err != nil {
			panic(err)
		}
		fmt.Println(srv.URL)
		io.Copy(io.Discard, os.Stdin)
		cpu, _ := processCPU()
		fmt.Fprintf(os.Stderr, "SERVER requests=%d cpu=%v per=%v\n", srv.Requests(), cpu, cpu/time.Duration(max(1, srv.Requests())))
		srv.Close()
		return
	}
	os.Exit(m.Run())
}

func BenchmarkZZ(b *testing.B) {
	for _, conc := range []int{16, 64} {
		b.Run(fmt.Sprint(conc), func(b *testing.B) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "ZZ_SERVE=1", "ZZ_LAT="+os.Getenv("LAT"), "ZZ_PROF="+os.Getenv("SPROF"))
			cmd.Stderr = os.Stderr
			in, _ := cmd.StdinPipe()
			out, _ := cmd.StdoutPipe()
			cmd.Start()
			line, _ := bufio.NewReader(out).ReadString('\n')
			defer func() { in.Close(); cmd.Wait() }()
			target, err := httptarget.New(context.Background(), httptarget.Config{
				BaseURL: strings.TrimSpace(line), Auth: httptarget.Auth{Type: "bearer", TokenEnv: "T"},
				Env:         func(string) (string, bool) { return token, true },
				Concurrency: conc, Objects: map[string]httptarget.Object{"partners": {}},
			})
			if err != nil {
				b.Fatal(err)
			}
			const batch = 1000
			changes := make([]connector.Change, batch)
			mk := func(base int) {
				for i := range changes {
					g := base + i
					changes[i] = connector.Change{Op: connector.OpInsert, SourceID: fmt.Sprint(g), Payload: map[string]any{
						"name": fmt.Sprintf("Company %d", g), "vat": fmt.Sprintf("BE0%d", 400000000+g), "city": fmt.Sprintf("City %d", g%100),
						"employees": int64(g % 5000), "revenue": json.Number("1234.25"), "active": g%3 == 0, "founded": "2001-02-03", "origin": "CRM",
					}}
				}
			}
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(0, &ru0)
			cpu0, _ := processCPU()
			b.ResetTimer()
			start := time.Now()
			var inWrite time.Duration
			for done := 0; done < b.N; done += batch {
				b.StopTimer()
				mk(done)
				b.StartTimer()
				s := time.Now()
				res, err := target.Write(context.Background(), "partners", changes[:min(batch, b.N-done)])
				inWrite += time.Since(s)
				if err != nil {
					b.Fatal(err)
				}
				for _, r := range res {
					if r.Err != nil {
						b.Fatal(r.Err)
					}
				}
			}
			el := time.Since(start)
			cpu1, _ := processCPU()
			syscall.Getrusage(0, &ru1)
			b.ReportMetric(float64((ru1.Utime.Nano()-ru0.Utime.Nano())/1000)/float64(b.N), "user-µs/rec")
			b.ReportMetric(float64((ru1.Stime.Nano()-ru0.Stime.Nano())/1000)/float64(b.N), "sys-µs/rec")
			b.ReportMetric(float64(ru1.Nvcsw-ru0.Nvcsw)/float64(b.N), "vcsw/rec")
			b.ReportMetric(float64(ru1.Nivcsw-ru0.Nivcsw)/float64(b.N), "ivcsw/rec")
			b.ReportMetric(float64(b.N)/el.Seconds(), "rec/s")
			b.ReportMetric(float64(b.N)/inWrite.Seconds(), "rec/s-in-write")
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "client-µs/rec")
		})
	}
}

func BenchmarkZZRaw(b *testing.B) {
	for _, conc := range []int{16, 64} {
		b.Run(fmt.Sprint(conc), func(b *testing.B) {
			cmd := exec.Command(os.Args[0])
			cmd.Env = append(os.Environ(), "ZZ_SERVE=1", "ZZ_LAT="+os.Getenv("LAT"))
			cmd.Stderr = os.Stderr
			in, _ := cmd.StdinPipe()
			out, _ := cmd.StdoutPipe()
			cmd.Start()
			line, _ := bufio.NewReader(out).ReadString('\n')
			defer func() { in.Close(); cmd.Wait() }()
			url := strings.TrimSpace(line) + "/partners"
			tr := &http.Transport{MaxIdleConnsPerHost: conc, MaxConnsPerHost: conc}
			client := &http.Client{Transport: tr}
			var next atomic.Int64
			cpu0, _ := processCPU()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						body := fmt.Sprintf(`{"active":false,"city":"City 1","employees":1,"founded":"2000-01-02","name":"Company %d","origin":"CRM","revenue":7.25,"vat":"BE0%d"}`, i, 400000000+i)
						req, _ := http.NewRequest("POST", url, strings.NewReader(body))
						req.Header.Set("Authorization", "Bearer "+token)
						req.Header.Set("Content-Type", "application/json")
						res, err := client.Do(req)
						if err != nil {
							b.Error(err)
							return
						}
						io.ReadAll(res.Body)
						res.Body.Close()
						if res.StatusCode != 201 {
							b.Error(res.StatusCode)
							return
						}
					}
				}()
			}
			wg.Wait()
			cpu1, _ := processCPU()
			b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(b.N), "client-µs/rec")
		})
	}
}
