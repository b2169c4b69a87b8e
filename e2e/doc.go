// Package e2e holds the real-browser tests of the chat server and its web
// page. The tests build the server of the parent module, run it on a free
// loopback port and drive headless Chromium through chromedp.
//
// Run them with
//
//	cd e2e && go test ./...
//
// They skip when no Chromium is found (set CHROME_PATH to choose one). The
// flag -update-screenshot rewrites ../docs/screenshot.png. CHAT_E2E_SERVER=PATH
// tests a server binary built elsewhere instead of building the parent module.
package e2e
