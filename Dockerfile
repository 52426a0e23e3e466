# flotilla: a static binary on a distroless base, running as a non-root user.
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY admission ./admission
COPY cmd ./cmd
COPY credentials ./credentials
COPY deploy ./deploy
COPY health ./health
COPY join ./join
COPY kubeletauth ./kubeletauth
COPY metrics ./metrics
COPY node ./node
COPY internal ./internal
COPY provider ./provider
COPY tenancy ./tenancy
COPY tracing ./tracing
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/flotilla ./cmd/flotilla

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/flotilla /flotilla
USER 65532:65532
# The kubelet API (logs, exec) and the Prometheus metrics endpoint; `flotilla webhook` serves on 8443.
EXPOSE 10250 10255 8443
ENTRYPOINT ["/flotilla"]
