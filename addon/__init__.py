"""mitmproxy glue for ai-proxy: the addon, config loading, statistics and the provider emulator."""
