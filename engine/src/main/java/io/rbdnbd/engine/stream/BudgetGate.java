package io.rbdnbd.engine.stream;

import io.rbdnbd.engine.protocol.NbdRequest;
import org.apache.pekko.stream.Attributes;
import org.apache.pekko.stream.FlowShape;
import org.apache.pekko.stream.Inlet;
import org.apache.pekko.stream.Outlet;
import org.apache.pekko.stream.stage.AbstractInHandler;
import org.apache.pekko.stream.stage.AbstractOutHandler;
import org.apache.pekko.stream.stage.AsyncCallback;
import org.apache.pekko.stream.stage.GraphStage;
import org.apache.pekko.stream.stage.GraphStageLogic;

/**
 * Lets a request through only once its bytes fit in the {@link InFlightBudget}; until then it
 * holds the request and, by not pulling, backpressures the socket reader.
 */
final class BudgetGate extends GraphStage<FlowShape<NbdRequest, NbdRequest>> {
    private final Inlet<NbdRequest> in = Inlet.create("BudgetGate.in");
    private final Outlet<NbdRequest> out = Outlet.create("BudgetGate.out");
    private final FlowShape<NbdRequest, NbdRequest> shape = FlowShape.of(in, out);
    private final InFlightBudget.Account account;

    BudgetGate(InFlightBudget.Account account) {
        this.account = account;
    }

    @Override
    public FlowShape<NbdRequest, NbdRequest> shape() {
        return shape;
    }

    @Override
    public GraphStageLogic createLogic(Attributes inheritedAttributes) {
        return new GraphStageLogic(shape) {
            private NbdRequest waiting;
            private AsyncCallback<Object> retry;

            @Override
            public void preStart() {
                retry = createAsyncCallback(ignored -> tryPass());
            }

            {
                setHandler(in, new AbstractInHandler() {
                    @Override
                    public void onPush() {
                        waiting = grab(in);
                        tryPass();
                    }

                    @Override
                    public void onUpstreamFinish() {
                        if (waiting == null) {
                            completeStage();
                        }
                    }
                });
                setHandler(out, new AbstractOutHandler() {
                    @Override
                    public void onPull() {
                        if (waiting == null && !hasBeenPulled(in)) {
                            pull(in);
                        }
                    }
                });
            }

            private void tryPass() {
                if (waiting == null) {
                    return;
                }
                if (account.tryAcquire(waiting.weight())) {
                    NbdRequest r = waiting;
                    waiting = null;
                    push(out, r);
                    if (isClosed(in)) {
                        completeStage();
                    }
                } else {
                    account.budget().onRelease(() -> retry.invoke(Boolean.TRUE));
                    if (account.budget().used() == 0) { // a release raced the registration
                        retry.invoke(Boolean.TRUE);
                    }
                }
            }
        };
    }
}
