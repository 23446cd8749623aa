// Package faultnet injects the faults an operator's bad day brings between a
// gateway and its store, for tests: a TCP proxy that can be killed (every
// connection closed, new ones refused), frozen (connections stay open, no byte
// flows either way, new connections hang) and reset (every open connection
// closed, new ones served), and a database/sql connector wrapper whose writes
// fail as on a full disk.
//
// The proxy forwards bytes unchanged; it never parses them. Every method is
// safe for concurrent use.
package faultnet

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Proxy is a TCP proxy from a loopback address to one target.
type Proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	cond   *sync.Cond // signalled when frozen or down changes
	frozen bool
	down   bool
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// Listen starts a proxy on 127.0.0.1 (a free port) to target (host:port).
func Listen(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's address (host:port).
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Freeze stops every byte in both directions; open connections stay open and
// new connections are accepted but not forwarded: a black hole.
func (p *Proxy) Freeze() { p.set(func() { p.frozen = true }) }

// Thaw lets bytes flow again after Freeze.
func (p *Proxy) Thaw() { p.set(func() { p.frozen = false }) }

// Kill closes every open connection and refuses new ones (they are closed
// as soon as accepted) until Restore: the store is down.
func (p *Proxy) Kill() {
	p.set(func() { p.down = true })
	p.Reset()
}

// Restore serves new connections again after Kill, and thaws.
func (p *Proxy) Restore() { p.set(func() { p.down, p.frozen = false, false }) }

// Reset closes every open connection abruptly (RST where the platform allows);
// new connections are served as before.
func (p *Proxy) Reset() {
	p.mu.Lock()
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
	clear(p.conns)
	p.mu.Unlock()
}

// Conns returns how many connections (both sides counted) are open.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() error {
	p.set(func() { p.closed = true })
	err := p.ln.Close()
	p.Reset()
	p.wg.Wait()
	return err
}

func (p *Proxy) set(f func()) {
	p.mu.Lock()
	f()
	p.cond.Broadcast()
	p.mu.Unlock()
}

// track registers c; false if the proxy is closed or down (c is closed).
func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.down {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// pass blocks while frozen; false once the connection should end.
func (p *Proxy) pass(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.frozen && !p.closed && !p.down {
		p.cond.Wait()
	}
	_, open := p.conns[c]
	return open && !p.closed && !p.down
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			continue
		}
		p.wg.Add(1)
		go p.serve(c)
	}
}

func (p *Proxy) serve(client net.Conn) {
	defer p.wg.Done()
	defer p.untrack(client)
	if !p.pass(client) { // frozen: the connection hangs before it reaches the target
		return
	}
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	if !p.track(server) {
		return
	}
	defer p.untrack(server)
	done := make(chan struct{}, 2)
	go func() { p.pump(server, client); done <- struct{}{} }()
	go func() { p.pump(client, server); done <- struct{}{} }()
	<-done
	// One side ended: end both, so the other pump returns too.
	client.Close()
	server.Close()
	<-done
}

// pump copies from src to dst, holding every chunk while the proxy is frozen.
func (p *Proxy) pump(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if !p.pass(src) || !p.pass(dst) {
				return
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return
			}
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			return
		}
	}
}
