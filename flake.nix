{
  description = "Real-time web chat server: one Go binary, standard library only";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" "x86_64-darwin" "aarch64-darwin" ];
      forAllSystems = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
      goFor = pkgs: pkgs.go_1_26 or pkgs.go;
    in
    {
      packages = forAllSystems (pkgs: {
        default = (pkgs.buildGoModule.override { go = goFor pkgs; }) {
          pname = "chat";
          version = "0.1.0";
          src = ./.;
          # Standard library only: nothing to vendor.
          vendorHash = null;
          subPackages = [ "." "cmd/chatload" ];
          # The tests open loopback sockets and (in e2e/) drive Chromium;
          # they run in CI with `go test -race ./...` instead of the sandbox.
          doCheck = false;
          meta = {
            description = "Real-time web chat server with Server-Sent Events";
            mainProgram = "chat";
          };
        };
      });

      apps = forAllSystems (pkgs: {
        default = {
          type = "app";
          program = "${self.packages.${pkgs.stdenv.hostPlatform.system}.default}/bin/chat";
        };
      });

      devShells = forAllSystems (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (goFor pkgs)
            pkgs.gopls
            pkgs.gotools
            pkgs.go-tools # staticcheck
            pkgs.delve
            pkgs.curl
            pkgs.nats-server # the NATS client's tests start real servers
          ] ++ pkgs.lib.optional pkgs.stdenv.isLinux pkgs.chromium;
        };
      });
    };
}
