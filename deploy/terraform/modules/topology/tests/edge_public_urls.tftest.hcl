# The optional public URLs of each region's edges. Every run is plan-only
# and uses no provider, so the file runs offline.

variables {
  regions = [
    { name = "us-east", latitude = 39.04, longitude = -77.49, edges = 2 },
    { name = "eu-central", latitude = 50.11, longitude = 8.68 },
    { name = "ap-southeast", latitude = 1.35, longitude = 103.82 },
  ]
  core_region = "us-east"
}

run "public_urls_unset" {
  command = plan

  assert {
    condition = alltrue(flatten([
      for region in jsondecode(output.plan).regions : [
        for edge in region.edges : !contains(keys(edge), "public_ws_url") && !contains(keys(edge), "public_http_url")
      ]
    ]))
    error_message = "Without edge_public_urls, no edge may have public_ws_url or public_http_url."
  }
}

run "public_urls_set_for_one_region" {
  command = plan

  variables {
    edge_public_urls = {
      "us-east" = {
        ws_url   = "wss://us-east.ama.example.com/v1/ws"
        http_url = "https://us-east.ama.example.com"
      }
    }
  }

  assert {
    condition = alltrue([
      for edge in jsondecode(output.plan).regions[0].edges :
      edge.public_ws_url == "wss://us-east.ama.example.com/v1/ws" && edge.public_http_url == "https://us-east.ama.example.com"
    ])
    error_message = "Every edge of us-east must carry the region's public_ws_url and public_http_url."
  }

  assert {
    condition     = length(jsondecode(output.plan).regions[0].edges) == 2
    error_message = "Public URLs must not change the number of edges of us-east."
  }

  assert {
    condition = alltrue(flatten([
      for region in slice(jsondecode(output.plan).regions, 1, 3) : [
        for edge in region.edges : !contains(keys(edge), "public_ws_url") && !contains(keys(edge), "public_http_url")
      ]
    ]))
    error_message = "Regions without an entry in edge_public_urls must keep edges without public URLs."
  }

  assert {
    condition     = jsondecode(output.plan).regions[0].edges[0].ws_port == 20115
    error_message = "Public URLs must not change the edges' ports."
  }
}

run "public_urls_plain_schemes" {
  command = plan

  variables {
    edge_public_urls = {
      "eu-central" = {
        ws_url   = "ws://eu-central.ama.example.com/v1/ws"
        http_url = "http://eu-central.ama.example.com"
      }
    }
  }

  assert {
    condition     = jsondecode(output.plan).regions[1].edges[0].public_ws_url == "ws://eu-central.ama.example.com/v1/ws"
    error_message = "edge_public_urls must accept a ws:// WebSocket URL."
  }

  assert {
    condition     = jsondecode(output.plan).regions[1].edges[0].public_http_url == "http://eu-central.ama.example.com"
    error_message = "edge_public_urls must accept an http:// URL."
  }
}

run "reject_public_urls_of_unknown_region" {
  command = plan

  variables {
    edge_public_urls = {
      "us-west" = {
        ws_url   = "wss://us-west.ama.example.com/v1/ws"
        http_url = "https://us-west.ama.example.com"
      }
    }
  }

  expect_failures = [var.edge_public_urls]
}

run "reject_public_ws_url_with_http_scheme" {
  command = plan

  variables {
    edge_public_urls = {
      "us-east" = {
        ws_url   = "https://us-east.ama.example.com/v1/ws"
        http_url = "https://us-east.ama.example.com"
      }
    }
  }

  expect_failures = [var.edge_public_urls]
}

run "reject_public_http_url_with_ws_scheme" {
  command = plan

  variables {
    edge_public_urls = {
      "us-east" = {
        ws_url   = "wss://us-east.ama.example.com/v1/ws"
        http_url = "wss://us-east.ama.example.com"
      }
    }
  }

  expect_failures = [var.edge_public_urls]
}
